"""Billing throughput: one day of hourly readings for 100,000 accounts priced and posted, and
the common-area shares of their 500 buildings, on a fresh SQLite file. No set-up needed.

The estate: 500 buildings of 200 households (floor areas 50–150 m²; share schemes by area,
equally and by usage in turn), each with a common-area meter that used 40–120 kWh in the day.
Half the accounts are on Beijing's monthly tiered tariff (阶梯, 0.4883/0.5383/0.7883), half on
Zhejiang's yearly tiered + time-of-use tariff (峰 0.568 / 谷 0.288, +0.05/+0.30 by tier), each
with a cycle figure somewhere in its tiers so that many cross a tier bound during the day. Each
meter reports 24 hourly readings, its per-period registers included.

Measured (`billing_accounts_per_s`): for every account, its 24 intervals priced exactly as the
worker prices them one by one (`app.billing.pricing.price_readings`: consecutive hours inside one
tier priced together, the hour crossing a bound alone; the property tests show the exact total
is the same), posted as one charge of the day under the one rounding rule
(`app.money.post_increment` over the meter's exact running total; idempotency key
`charge:<meter>:<from Wh>:<to Wh>`, the same form as the worker's), the meter's exact total and
the account's cycle moved on; then `post_shares` for every building (largest remainder, one
`share` entry per household). Also printed: the set-up time, the peak RSS, and a check that the
ledger sums to the charges and the shares to the buildings' common charges.

    python -m bench.billing
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import random
import resource
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from app.billing.pricing import price_readings
from app.billing.services import E7
from app.billing.shares import post_shares
from app.db import make_engine, transaction
from app.estate.models import Account, Building, Estate, Gateway, Meter, Reading
from app.ledger.models import CHARGE, LedgerEntry
from app.migrate import upgrade
from app.money import post_increment
from app.tariffs import CHINA_TZ, load_tariff
from app.tariffs.store import add_tariff

ACCOUNTS, BUILDINGS, HOURS = 100_000, 500, 24
CHUNK = 5_000
WORKERS = max(1, min(4, os.cpu_count() or 1))  # pricing processes; the writer is this one
EXAMPLES = Path(__file__).resolve().parent.parent / "tests" / "tariffs" / "examples"
DAY = dt.date(2026, 11, 22)
DAY_START = dt.datetime(2026, 11, 22, tzinfo=CHINA_TZ).astimezone(dt.timezone.utc)
DAY_END = DAY_START + dt.timedelta(days=1)
SCHEMES = ("area", "equal", "usage")
HOURLY_WH = (0, 80, 150, 300, 600, 1200, 2500)
PERIOD_OF_HOUR = ["peak" if 8 <= h < 22 else "valley" for h in range(HOURS)]


def make_estate(engine, rng: random.Random) -> dict:
    """Tariffs, buildings, accounts and meters in bulk; returns the tariffs by id."""
    beijing_json = (EXAMPLES / "beijing_tiered.json").read_text()
    zhejiang_json = (EXAMPLES / "zhejiang_tiered_tou.json").read_text()
    with transaction(engine) as s:
        beijing = add_tariff(s, "北京居民阶梯", beijing_json, dt.date(2020, 1, 1)).id
        zhejiang = add_tariff(s, "浙江居民阶梯分时", zhejiang_json, dt.date(2020, 1, 1)).id
    created = DAY_START - dt.timedelta(days=400)
    per_building = ACCOUNTS // BUILDINGS
    with engine.begin() as conn:
        conn.execute(sa.insert(Estate.__table__), [{"id": 1, "name": "bench"}])
        conn.execute(sa.insert(Gateway.__table__),
                     [{"id": 1, "name": "gw", "host": "127.0.0.1", "port": 1}])
        conn.execute(sa.insert(Building.__table__), [
            {"id": b + 1, "estate_id": 1, "name": f"{b + 1}号楼", "share_scheme": SCHEMES[b % 3],
             "common_price_yuan_per_kwh": Decimal("0.5583"), "shared_exact_e7": 0,
             "shared_fen": 0} for b in range(BUILDINGS)])
        accounts, meters = [], []
        for i in range(ACCOUNTS):
            tou = i % 2 == 1
            accounts.append({
                "id": i + 1, "number": f"{i + 1:06d}", "building_id": i // per_building + 1,
                "household": str(i + 1), "holder_name": "", "holder_phone": "",
                "floor_area_m2": Decimal(rng.randint(5000, 15000)) / 100,
                "strategy": "residential", "price_yuan_per_kwh": Decimal("0.5583"),
                "restore_threshold_fen": 0, "cut_below_fen": 0, "created_at": created,
                "tariff_id": zhejiang if tou else beijing, "tariff_uplift": False,
                "cycle_start": DAY.replace(month=1, day=1) if tou else DAY.replace(day=1),
                "cycle_wh": rng.randint(0, 5_500_000) if tou else rng.randint(0, 450_000),
                "cycle_opening_wh": 0})
            meters.append({"id": i + 1, "account_id": i + 1, "gateway_id": 1, "unit_id": 1,
                           "online": True, "failures_in_row": 0, "max_power_w": 13_800,
                           "billed_exact_e7": 0, "billed_fen": 0, "common_area": False,
                           "building_id": None})
        conn.execute(sa.insert(Account.__table__), accounts)
        meters += [{"id": ACCOUNTS + b + 1, "account_id": None, "building_id": b + 1,
                    "gateway_id": 1, "unit_id": 2, "online": True, "failures_in_row": 0,
                    "max_power_w": 13_800, "billed_exact_e7": 0, "billed_fen": 0,
                    "common_area": True} for b in range(BUILDINGS)]
        conn.execute(sa.insert(Meter.__table__), meters)
        readings = []
        for b in range(BUILDINGS):
            used = rng.randint(40_000, 120_000)
            readings += [{"meter_id": ACCOUNTS + b + 1, "read_at": at, "energy_wh": wh,
                          "relay_open": False}
                         for at, wh in ((DAY_START - dt.timedelta(minutes=5), 1_000_000),
                                        (DAY_END - dt.timedelta(minutes=5), 1_000_000 + used))]
        conn.execute(sa.insert(Reading.__table__), readings)
    return {beijing: load_tariff(beijing_json), zhejiang: load_tariff(zhejiang_json)}


def hourly_readings(rng: random.Random, tou: bool) -> list:
    """24 hourly intervals of one household: Wh, or Wh per period (each hour in one period of
    the Zhejiang tariff: 峰 08:00–22:00, 谷 22:00–08:00), as the registers' differences say."""
    hours = rng.choices(HOURLY_WH, k=HOURS)
    if not tou:
        return hours
    return [{period: wh} for period, wh in zip(PERIOD_OF_HOUR, hours)]


def price_chunk(job: tuple[list, int]) -> tuple[list, list, list, int]:
    """Price one chunk of accounts' days (in a worker process: pure, no database). Returns the
    ledger rows, the meters' and the accounts' new totals, and the fen posted."""
    rows, seed = job
    rng = random.Random(seed)
    entries, meter_updates, account_updates, total = [], [], [], 0
    posted_at = (DAY_END - dt.timedelta(seconds=1)).astimezone(dt.timezone.utc)
    posted_at_text = posted_at.strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLite's DATETIME text
    for account_id, tariff_id, cycle_wh, meter_id, billed_e7, billed_fen in rows:
        tariff = _TARIFFS[tariff_id]
        intervals = hourly_readings(rng, tariff.kind == "tiered_tou")
        quote = price_readings(tariff, cycle_wh, intervals, month=DAY.month)
        wh = quote.energy_wh
        if not wh:
            continue
        fen = post_increment(Decimal(billed_e7) / E7, quote.exact_yuan)
        start_wh = 1_000_000 + meter_id
        entries.append((account_id, -fen, CHARGE, f"charge:{meter_id}:{start_wh}:{start_wh + wh}",
                        f"{DAY} 24 h: {wh} Wh, {quote.exact_yuan} 元", wh, posted_at_text))
        meter_updates.append((billed_e7 + int(quote.exact_yuan * E7), billed_fen + fen, meter_id))
        account_updates.append((cycle_wh + wh, account_id))
        total += fen
    return entries, meter_updates, account_updates, total


_TARIFFS: dict = {}


def _use_tariffs(tariffs: dict) -> None:
    _TARIFFS.clear()
    _TARIFFS.update(tariffs)


def post_charges(engine, result: tuple[list, list, list, int]) -> None:
    """Write one priced chunk in one transaction (SQLite: the driver's executemany)."""
    entries, meter_updates, account_updates, _ = result
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO ledger_entry (account_id, amount_fen, kind, idempotency_key, memo,"
            " energy_wh, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", entries)
        conn.exec_driver_sql("UPDATE meter SET billed_exact_e7 = ?, billed_fen = ? WHERE id = ?",
                             meter_updates)
        conn.exec_driver_sql("UPDATE account SET cycle_wh = ? WHERE id = ?", account_updates)


def main() -> None:
    rng = random.Random(20261122)
    tmp = Path(tempfile.mkdtemp(prefix="feikong-bench-billing-"))
    try:
        url = f"sqlite:///{tmp / 'bench.db'}"
        t0 = time.perf_counter()
        upgrade(url)
        engine = make_engine(url)
        tariffs = make_estate(engine, rng)
        setup_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        charged_fen = entries = 0
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(
                sa.select(Account.id, Account.tariff_id, Account.cycle_wh, Meter.id,
                          Meter.billed_exact_e7, Meter.billed_fen)
                .join(Meter, Meter.account_id == Account.id).order_by(Account.id))]
        jobs = [(rows[i:i + CHUNK], i) for i in range(0, len(rows), CHUNK)]
        context = multiprocessing.get_context("fork")
        with context.Pool(WORKERS, initializer=_use_tariffs, initargs=(tariffs,)) as pool:
            for result in pool.imap(price_chunk, jobs):
                post_charges(engine, result)
                charged_fen += result[3]
                entries += len(result[0])
        t2 = time.perf_counter()
        shared_fen = 0
        with transaction(engine) as s:
            for building in s.exec(sa.select(Building).order_by(Building.id)).scalars():
                run = post_shares(s, building, DAY_START, DAY_END)
                shared_fen += run.charge_fen
        t3 = time.perf_counter()
        with engine.connect() as conn:
            ledger = conn.execute(sa.select(sa.func.sum(LedgerEntry.amount_fen))).scalar()
            shares = conn.execute(sa.select(sa.func.count()).where(
                LedgerEntry.kind == "share")).scalar()
        engine.dispose()
        assert ledger == -(charged_fen + shared_fen), (ledger, charged_fen, shared_fen)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"setup_s: {setup_s:.1f}")
        print(f"charges_posted: {entries} ({charged_fen / 100:.2f} 元) in {t2 - t1:.2f} s")
        print(f"shares_posted: {shares} for {BUILDINGS} buildings ({shared_fen / 100:.2f} 元) "
              f"in {t3 - t2:.2f} s")
        print(f"ledger_check: sum of ledger = -(charges + shares) = {ledger} fen")
        print(f"billing_accounts_per_s: {ACCOUNTS / (t3 - t1):.0f}")
        print(f"peak_rss_mb: {peak_mb:.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
