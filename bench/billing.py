"""Billing throughput: one day of hourly readings for 100,000 accounts priced and posted, and
the common-area shares of their 500 buildings, on a fresh SQLite file. No set-up needed.

The estate: 500 buildings of 200 households (floor areas 50–150 m²; share schemes by area,
equally and by usage in turn), each with a common-area meter that used 40–120 kWh in the day.
Half the accounts are on Beijing's monthly tiered tariff (阶梯, 0.4883/0.5383/0.7883), half on
Zhejiang's yearly tiered + time-of-use tariff (峰 0.568 / 谷 0.288, +0.05/+0.30 by tier), each
with a cycle figure somewhere in its tiers so that many cross a tier bound during the day. Each
meter reports 24 hourly readings (0–2.5 kWh an hour), its per-period registers included.

Measured (`billing_accounts_per_s`), from the accounts in the database to the shares committed:
for every account, its 24 intervals priced exactly as the worker prices them one by one
(`app.billing.pricing.readings_cost`, the count of `price_readings`: in integers of 1e-7 元, a
day inside one tier summed per period, an hour crossing a bound split by `price_interval`'s
rule; the property tests show the exact total is the same), posted as one charge of the day
under the one rounding rule (`app.money.post_increment` over the meter's exact running total;
idempotency key `charge:<meter>:<from Wh>:<to Wh>`, the same form as the worker's), the meter's
exact total and the account's cycle moved on; then `share_buildings` (`post_shares` for every
building: largest remainder, one `share` entry per household). The pricing runs in worker
processes, each reading its chunk of accounts; this process writes, one transaction per chunk.
Also printed: the set-up time, the peak RSS, and a check that the ledger sums to the charges and
the shares to the buildings' common charges.

    python -m bench.billing
"""

from __future__ import annotations

import datetime as dt
import gc
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

from app.billing.pricing import readings_cost
from app.billing.services import E7, insert_entries
from app.billing.shares import share_buildings
from app.db import READ_ONLY, driver_rows, driver_update_many, make_engine, transaction
from app.estate.models import Account, Building, Estate, Gateway, Meter, Reading
from app.estate.rollup import Rollup
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
MEMO_DAY = f"{DAY} 24 h: "
POSTED_AT = DAY_END - dt.timedelta(seconds=1)  # the day's charges, posted inside the day
SCHEMES = ("area", "equal", "usage")
HOURLY_WH = (0, 80, 150, 300, 600, 900, 1200, 2500)  # an hour's use: one of these, equally likely
PERIOD_OF_HOUR = ["peak" if 8 <= h < 22 else "valley" for h in range(HOURS)]
# A random byte picks an hour's use (its low 3 bits); an hour with periods is {period: Wh}, the
# same (never modified) mapping for the same hour and use.
WH_OF_BYTE = [HOURLY_WH[x & 7] for x in range(256)]
PERIODS_OF_BYTE = [[{period: HOURLY_WH[x & 7]} for x in range(256)] for period in PERIOD_OF_HOUR]


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
        readings, days = [], Rollup()  # the rows the worker stores for these readings
        for b in range(BUILDINGS):
            used = rng.randint(40_000, 120_000)
            for at, wh, step in ((DAY_START - dt.timedelta(minutes=5), 1_000_000, 0),
                                 (DAY_END - dt.timedelta(minutes=5), 1_000_000 + used, used)):
                readings.append({"meter_id": ACCOUNTS + b + 1, "read_at": at, "energy_wh": wh,
                                 "relay_open": False})
                days.reading(ACCOUNTS + b + 1, at, wh, step)
        conn.execute(sa.insert(Reading.__table__), readings)
        days.write(conn)
    return {beijing: load_tariff(beijing_json), zhejiang: load_tariff(zhejiang_json)}


def hourly_readings(rng: random.Random, tou: bool) -> list:
    """24 hourly intervals of one household: Wh, or Wh per period (each hour in one period of
    the Zhejiang tariff: 峰 08:00–22:00, 谷 22:00–08:00), as the registers' differences say."""
    day = rng.randbytes(HOURS)
    if not tou:
        return [WH_OF_BYTE[x] for x in day]
    return [hour[x] for hour, x in zip(PERIODS_OF_BYTE, day)]


def price_chunk(job: tuple[int, int, int]) -> tuple[list, list, list, int]:
    """Price the days of the accounts with ids in [first, last] (in a worker process: reads the
    accounts' cycle and the meters' totals, writes nothing). Returns the ledger rows
    (`app.billing.services.insert_entries`), the meters' and the accounts' new totals, and the
    fen posted."""
    first, last, seed = job
    with _WORKER["engine"].connect() as conn:  # integers only: the driver's own rows
        rows = driver_rows(conn, sa.select(Account.id, Account.tariff_id, Account.cycle_wh,
                                           Meter.id, Meter.billed_exact_e7, Meter.billed_fen)
                           .join(Meter, Meter.account_id == Account.id)
                           .where(Account.id.between(first, last)).order_by(Account.id))
    tariffs = _WORKER["tariffs"]
    rng = random.Random(seed)
    entries, meter_updates, account_updates, total = [], [], [], 0
    for account_id, tariff_id, cycle_wh, meter_id, billed_e7, billed_fen in rows:
        tariff = tariffs[tariff_id]
        intervals = hourly_readings(rng, tariff.kind == "tiered_tou")
        wh, exact = readings_cost(tariff, cycle_wh, intervals, month=DAY.month)
        if not wh:
            continue
        fen = post_increment(Decimal(billed_e7) / E7, exact)
        start_wh = 1_000_000 + meter_id
        entries.append((account_id, -fen, CHARGE, f"charge:{meter_id}:{start_wh}:{start_wh + wh}",
                        f"{MEMO_DAY}{wh} Wh, {exact} 元", wh))
        meter_updates.append((billed_e7 + int(exact * E7), billed_fen + fen, meter_id))
        account_updates.append((cycle_wh + wh, account_id))
        total += fen
    return entries, meter_updates, account_updates, total


_WORKER: dict = {}


def _start_worker(url: str, tariffs: dict) -> None:
    """A pricing process: its own engine (a forked process must not share the parent's
    connections) and the parsed tariffs by id."""
    _WORKER["engine"] = make_engine(url).execution_options(**{READ_ONLY: True})  # never waits
    _WORKER["tariffs"] = tariffs


def post_charges(engine, result: tuple[list, list, list, int]) -> None:
    """Write one priced chunk in one transaction, straight to the driver (`insert_entries`,
    `app.db.driver_update_many`)."""
    entries, meter_updates, account_updates, _ = result
    with engine.begin() as conn:
        insert_entries(conn, entries, created_at=POSTED_AT)
        driver_update_many(conn, "meter", ("billed_exact_e7", "billed_fen"), "id", meter_updates)
        driver_update_many(conn, "account", ("cycle_wh",), "id", account_updates)


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
        engine.dispose()  # no pooled connection for the pricing processes to inherit
        gc.freeze()  # the set-up's objects (migrations, models) stay: no collector passes over them
        t1 = time.perf_counter()
        charged_fen = entries = 0
        jobs = [(first, min(first + CHUNK - 1, ACCOUNTS), first)  # account ids, and the seed
                for first in range(1, ACCOUNTS + 1, CHUNK)]
        context = multiprocessing.get_context("fork")
        with context.Pool(WORKERS, initializer=_start_worker, initargs=(url, tariffs)) as pool:
            for result in pool.imap(price_chunk, jobs):
                post_charges(engine, result)
                charged_fen += result[3]
                entries += len(result[0])
        t2 = time.perf_counter()
        with transaction(engine) as s:
            buildings = list(s.exec(sa.select(Building).order_by(Building.id)).scalars())
            shared_fen = sum(run.charge_fen
                             for run in share_buildings(s, buildings, DAY_START, DAY_END))
        t3 = time.perf_counter()
        with engine.connect() as conn:
            ledger = conn.execute(sa.select(sa.func.sum(LedgerEntry.amount_fen))).scalar()
            by_kind = {kind: (count, -total) for kind, count, total in conn.execute(
                sa.select(LedgerEntry.kind, sa.func.count(), sa.func.sum(LedgerEntry.amount_fen))
                .group_by(LedgerEntry.kind))}
            meters = conn.execute(sa.select(sa.func.sum(Meter.billed_fen))).scalar()
            common = conn.execute(sa.select(sa.func.sum(Building.shared_fen))).scalar()
        engine.dispose()
        shares = by_kind["share"][0]
        assert ledger == -(charged_fen + shared_fen), (ledger, charged_fen, shared_fen)
        assert by_kind == {CHARGE: (entries, charged_fen), "share": (shares, shared_fen)}, by_kind
        assert meters == charged_fen and common == shared_fen, (meters, common)
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
