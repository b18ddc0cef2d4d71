"""The property managers' console at 10,000 accounts with a year behind them: server time of the
dashboard, the accounts list filtered by state, a search and an account page, on SQLite and on
PostgreSQL. No set-up: a SQLite file in a temporary directory, a throwaway PostgreSQL cluster
(`bench.common.throwaway_postgres`).

The estate: households in buildings of 200 (10,000 in 50 on SQLite), one meter each, the flat
0.5583 元/kWh (a fifth listed on Beijing's tiered tariff, for its filter), and the 365 local days
that end at today's local midnight. A household follows one of 64 yearly profiles (each day one
of `bench.years`' 64 load shapes: four sizes of household, one up in Jan, Jul, Aug and Dec) from
a register of its own. Written in bulk by INSERT … SELECT from small scratch tables (profiles,
shapes, days, meters), in meter order (so an account's rows lie together, where the worker's lie
among everyone's: the pages read them by index either way, from a warm cache):
- a `daily_frozen` row per meter and day, with the shape's 96-point curve (`format_curve`);
- the charges: the accounts whose pages are measured (2 a building) have the year hourly, a
  `charge` per local hour as the worker posts them (key `charge:<meter>:<from Wh>:<to Wh>`, the
  step of the rounded running total, at the next hour's first poll); every other account has one
  charge a day (same key form, same fen in all). A year hourly for all would be 87.6 M entries,
  and even a year of daily `share` entries for all (3.65 M) does not fit in two minutes: only
  the measured accounts have their daily shares (by area, rounded down: not `share_buildings`'
  largest remainder), every building its daily `share_run`;
- a paid `pay_order`, its `topup` entry and `payment_received` notice whenever the profile's
  balance starts a day below 50 元 (100–300 元), 40 payments today (the dashboard's tiles) and
  a few refunds;
- an `opening` entry a year ago that brings each kept balance where the account's state wants
  it: 3 % low (1–9 元), 1.5 % exhausted (below 0; 60 % of them cut, with the commands, attempts,
  cut decisions and notices; the others waiting, 10 of them for an approval, some with a cut
  pending), 1 % on the care list (爱心档案; a manager task when exhausted), 0.5 % offline (an open
  anomaly); every other balance 20–600 元; each meter with a part of an hour accrued and not yet
  posted, as the worker leaves them between two hours.
The ledger's trigger and secondary indexes (SQLite), its UNIQUE constraints and secondary
indexes (PostgreSQL) are off during the load (`bench.years.drop_for_load`, `drop_ledger_indexes`)
and put back after it; `account_balance` is written as the triggers would have (each account's
sum and count, from the plan), then checked against the ledger for 200 accounts. PostgreSQL then
VACUUM ANALYZE and CHECKPOINT, as years.py does. Both databases are built at once (two threads,
two cores).

PostgreSQL is built for 5,000 households (BENCH_PG_ACCOUNTS, a multiple of 200; the same year):
at 10,000 it loads in about 60 s (its index builds on text under C.UTF-8), beside SQLite's
load that takes the run past two minutes.

Measured: the real app (`app.main.create_app`) in-process through starlette's TestClient, logged
in through the real login form (asgi-csrf's cookie and field) as an estate administrator; each
request timed around the call (perf_counter: middleware, session, queries, template). After 2
rounds of warm-up, 30 rounds of: `/manage/accounts?state=low` and `?state=cut` (filtered lists),
`/manage/accounts?q=…` (a search: part of a 户号, of a 房号, or a surname, in turn),
`/manage/accounts/<户号>` (one of the accounts with a year of hourly charges, in turn), and
`GET /manage/` (the dashboard).
Every answer must be 200 and show what it should: the dashboard every building, as many low and
cut accounts and today's payments as the plan made; the lists only accounts in that state, as
many as there are (up to a page); a search the first page a search of the plan finds; an account
page its holder's 户号 and its newest hourly charges. Then 15 rounds as the manager of one
building (`bm_`). Printed: p50 and p99 per page, over all pages `console_p50_ms` and
`console_p99_ms` (goal p99 ≤ 100 ms), the building manager's `bm_console_*`; the same prefixed
`pg_` for PostgreSQL; set-up and measuring times, sizes. With 15–30 samples a page (what the
two minutes allow), a page's p99 is about its slowest request.

    python -m bench.console
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import gc
import itertools
import os
import random
import re
import shutil
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import sqlalchemy as sa
from starlette.testclient import TestClient

from app.anomalies.models import ENERGY_JUMP, METER_OFFLINE, Anomaly
from app.commands.models import CUT, DONE, PENDING, RESTORE, Command, CommandAttempt
from app.console.managers import add_manager
from app.console.models import BUILDING_MANAGER, ESTATE_ADMIN
from app.db import driver_executemany, make_engine, transaction
from app.estate.models import Account, Building, Estate, Gateway, Meter, ShareRun
from app.ledger.models import OPENING, REFUND, TOPUP, AccountBalance, LedgerEntry
from app.main import create_app
from app.migrate import upgrade
from app.notices.models import (BALANCE_EXHAUSTED, LOW_BALANCE, PAYMENT_RECEIVED, POWER_CUT,
                                POWER_RESTORED, Notice)
from app.orders.models import PAID, REFUND_SUCCEEDED, Order, Refund
from app.policy.models import CUT as CUT_OUTCOME
from app.policy.models import CARE_LIST_EXHAUSTED, WAIT, CutApproval, CutDecision, ManagerTask
from app.settings import Settings
from app.tariffs import CHINA_TZ
from app.tariffs.store import add_tariff
from bench.common import throwaway_postgres
from bench.years import HOMES, SHAPES, SIZE_WEIGHTS, VARIANTS, bulk_engine, drop_for_load, fen, put

ACCOUNTS, PG_ACCOUNTS = 10_000, int(os.environ.get("BENCH_PG_ACCOUNTS", 5_000))
PER_BUILDING, DAYS, PROFILES, FIRST = 200, 365, 64, 10_000  # ids of one width: keys sort
HOURLY_EVERY = 100  # one account in 100 has the year hourly: the measured account pages
PRICE, E7_PER_WH = Decimal("0.5583"), 5583  # 0.5583 元/kWh is 5583 × 1e-7 元 a Wh
OPENING_SIM, TOPUP_BELOW, TOPUP_FEN, SHARE_EST_FEN = 50_000, 5_000, (10_000, 20_000, 30_000), 40
TODAY_PAYMENTS, REFUNDS = 40, 10
WARM_UP, ROUNDS, BM_ROUNDS = 2, 30, 15
PASSWORD = "bench console password"
SEED = 20261205
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
EXAMPLES = Path(__file__).resolve().parent.parent / "tests" / "tariffs" / "examples"
_NOW = dt.datetime.now(CHINA_TZ)  # (a run across local midnight fails the dashboard's check)
TODAY = dt.datetime(_NOW.year, _NOW.month, _NOW.day, tzinfo=CHINA_TZ)
NOW, END = _NOW.astimezone(dt.timezone.utc), TODAY.astimezone(dt.timezone.utc)
START = END - dt.timedelta(days=DAYS)
START_S, HOUR = int(START.timestamp()), dt.timedelta(hours=1)
assert PG_ACCOUNTS % PER_BUILDING == 0 and 0 < PG_ACCOUNTS <= ACCOUNTS


# --- the plan: the same on both databases -------------------------------------------------------

def profiles() -> tuple[list, list, list]:
    """64 yearly profiles: by day (profile, day, shape, Wh used before the day); the top-ups
    (profile, n, day, seconds into the day, fen) that keep its balance above 50 元; its Wh."""
    days, topups, totals = [], [], []
    for p in range(PROFILES):
        rng = random.Random(SEED + p)
        size = rng.choices(range(4), SIZE_WEIGHTS)[0]
        used, balance, n = 0, OPENING_SIM, 0
        for i in range(DAYS):
            month = (START + dt.timedelta(days=i)).astimezone(CHINA_TZ).month
            shape = min(3, size + (month in (1, 7, 8, 12))) * VARIANTS + rng.randrange(VARIANTS)
            if balance < TOPUP_BELOW:
                amount = rng.choice(TOPUP_FEN)
                topups.append((p, n, i, rng.randrange(9 * 3600, 21 * 3600), amount))
                balance, n = balance + amount, n + 1
            days.append((p, i, shape, used))
            balance -= fen(used + SHAPES[shape].total) - fen(used) + SHARE_EST_FEN
            used += SHAPES[shape].total
        totals.append(used)
    return days, topups, totals


PROFILE_DAYS, PROFILE_TOPUPS, PROFILE_WH = profiles()


def common_days(buildings: int) -> list[tuple]:
    """Each building's days: (building, day, common Wh, fen, the share memo's head)."""
    rows = []
    for b in range(FIRST, FIRST + buildings):
        rng, exact_e7, posted = random.Random(SEED - b), 0, 0
        for i in range(DAYS):
            wh = rng.randrange(40_000, 120_000, 10)
            exact_e7 += wh * E7_PER_WH
            charge = (exact_e7 + 50_000) // 100_000 - posted
            posted += charge
            day = (START + dt.timedelta(days=i)).astimezone(CHINA_TZ).date()
            rows.append((b, i, wh, charge, f"公摊 {day}: 公共 {wh / 1000:.3f} kWh × {PRICE} = "
                                           f"{charge / 100:.2f} 元; 按面积"))
    return rows


class Households:
    """The accounts and meters, their states, and the rows the load joins (`meter_rows`: id,
    building, profile, register a year ago, poll second, hourly, floor area in dm², balance)."""

    def __init__(self, count: int):
        self.buildings = count // PER_BUILDING
        self.accounts, self.meter_rows, self.meters = [], [], []
        self.state: dict[int, str] = {}  # normal | low | exhausted | cut
        self.care, self.offline, self.hourly = set(), set(), []
        for k in range(count):
            self.add(FIRST + k, k // PER_BUILDING, k % PER_BUILDING)
        self.commons = common_days(self.buildings)
        rng = random.Random(SEED + 1)
        self.paid_today = rng.sample([a for a, s in self.state.items() if s == "normal"],
                                     TODAY_PAYMENTS)

    def add(self, a: int, b: int, unit: int) -> None:
        rng = random.Random(SEED * 7 + a)
        r = rng.random()
        state = self.state[a] = ("low" if r < 0.03 else "cut" if r < 0.039 else
                                 "exhausted" if r < 0.045 else "normal")
        target = (rng.randrange(100, 900) if state == "low" else rng.randrange(2_000, 60_000)
                  if state == "normal" else -rng.randrange(50, 3_000))
        if rng.random() < 0.01:
            self.care.add(a)
        if rng.random() < 0.005:
            self.offline.add(a)
        hourly = unit % HOURLY_EVERY == 7
        if hourly:
            self.hourly.append(a)
        tiered, area = rng.random() < 0.2, rng.randrange(500, 1500)
        self.accounts.append({
            "id": a, "number": f"66{a:05d}", "building_id": FIRST + b,
            "household": f"{b + 1}-{unit // 50 + 1}-{unit % 50 // 2 + 1}{unit % 2 + 1:02d}",
            "holder_name": rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
            "holder_phone": f"139{rng.randrange(10 ** 8):08d}", "floor_area_m2": Decimal(area)
            / 100, "price_yuan_per_kwh": PRICE, "tariff_id": 1 if tiered else None,
            "cycle_start": TODAY.date().replace(day=1) if tiered else None,
            "care_list": a in self.care, "created_at": START - 3 * HOUR,
            "exhausted_at": (END - rng.randrange(2, 72) * HOUR
                             if state in ("cut", "exhausted") else None)})
        profile, sec = a * 37 % PROFILES, a % 60
        reg0, used = rng.randrange(1_000_000, 5_000_000) * 10, PROFILE_WH[profile]
        accrued = rng.randrange(0, 400, 10)  # Wh of this hour, not posted yet
        online = a not in self.offline
        self.meters.append({
            "id": a, "account_id": a, "gateway_id": b + 1, "unit_id": unit + 1,
            "relay_open": state == "cut", "relay_read_at": END - 5 * HOUR,
            "last_energy_wh": reg0 + used + accrued, "online": online,
            "failures_in_row": 0 if online else 3,
            "last_read_at": NOW - dt.timedelta(seconds=60 + sec if online else 9 * 3600),
            "billed_exact_e7": (used + accrued) * E7_PER_WH, "billed_fen": fen(used),
            "accrued_from_wh": reg0 + used if accrued else None,
            "accrued_to_wh": reg0 + used + accrued if accrued else None, "accrued_wh": accrued,
            "accrued_hour": NOW.replace(minute=0, second=0, microsecond=0) if accrued else None})
        self.meter_rows.append((a, FIRST + b, profile, reg0, sec, int(hourly), area, target))

    def account(self, a: int) -> dict:
        return self.accounts[a - FIRST]


# --- the load -----------------------------------------------------------------------------------

AT = {"sqlite": "strftime('%Y-%m-%d %H:%M:%S', {x}, 'unixepoch') || '.000000'",  # as bound
      "postgresql": "to_timestamp({x})"}
STAMP = {"sqlite": "strftime('%Y%m%d%H%M%S', {x}, 'unixepoch')",
         "postgresql": "to_char(to_timestamp({x}) AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISS')"}
ENTRY = ("account_id", "amount_fen", "kind", "idempotency_key", "memo", "energy_wh", "created_at")
INTO_LEDGER = f"INSERT INTO ledger_entry ({', '.join(ENTRY)}) SELECT m.meter_id, "
FEN = f"((p.used_before + {{x}}) * {E7_PER_WH} + 50000) / 100000"  # `fen` of the running total
CHARGE = (FEN.format(x="{before}") + " - " + FEN.format(x="{after}") + ", 'charge', 'charge:' || "
          "m.meter_id || ':' || (m.reg0 + p.used_before + {before}) || ':' || (m.reg0 + "
          f"p.used_before + {{after}}), {{wh}} || ' Wh × {PRICE} 元/kWh', {{wh}}, ")
TOPUPS = ("FROM b_meter m CROSS JOIN b_topup t CROSS JOIN b_day d "
          "WHERE t.profile = m.profile AND d.day = t.day")
GENERATED = [  # a meter's id is its account's; SQLite joins in the order written (CROSS JOIN)
    # the year hourly: a charge per local hour, at the next hour's first poll
    INTO_LEDGER + CHARGE.format(before="h.used_end - h.wh", after="h.used_end", wh="h.wh")
    + "{at_hour} FROM b_meter m CROSS JOIN b_pday p CROSS JOIN b_hour h "
      "WHERE m.hourly = 1 AND p.profile = m.profile AND h.shape = p.shape",
    # the others: a charge a day, at the next day's first poll
    INTO_LEDGER + CHARGE.format(before="0", after="s.total_wh", wh="s.total_wh")
    + "{at_day} FROM b_meter m CROSS JOIN b_pday p CROSS JOIN b_shape s "
      "WHERE m.hourly = 0 AND p.profile = m.profile AND s.shape = p.shape",
    # the measured accounts' shares, 12 minutes after each day
    INTO_LEDGER + "-(c.charge_fen * m.area / t.area), 'share', 'share:' || m.building_id || ':' "
    "|| d.day_text || ':' || m.meter_id, c.head || ' ' || m.area || '/' || t.area || ' (200 户) → "
    "' || (c.charge_fen * m.area / t.area) || ' fen', NULL, {at_share} FROM b_meter m "
    "CROSS JOIN b_common c CROSS JOIN b_day d CROSS JOIN b_area t WHERE m.hourly = 1 AND "
    "c.building_id = m.building_id AND d.day = c.day AND t.building_id = m.building_id",
    # the top-ups, their orders and notices
    INTO_LEDGER + "t.amount, 'topup', 'order:FK' || {stamp_ordered} || m.meter_id, 'wechat 4200'"
    " || m.meter_id || t.n, NULL, {at_paid} " + TOPUPS,
    "INSERT INTO pay_order (out_trade_no, account_id, amount_fen, channel, status, "
    "provider_trade_no, created_at, paid_at, query_count) SELECT 'FK' || {stamp_ordered} || "
    "m.meter_id, m.meter_id, t.amount, 'wechat', 'paid', '4200' || m.meter_id || t.n, "
    "{at_ordered}, {at_paid}, 0 " + TOPUPS,
    "INSERT INTO notice (account_id, kind, amount_fen, created_at) SELECT m.meter_id, "
    "'payment_received', t.amount, {at_paid} " + TOPUPS,
    # the days
    "INSERT INTO daily_frozen (meter_id, day, opening_wh, register_wh, read_at, used_wh, curve) "
    "SELECT m.meter_id, {day}, m.reg0 + p.used_before + s.first_wh, m.reg0 + p.used_before + "
    "s.total_wh, {at_frozen}, s.total_wh, s.curve FROM b_meter m CROSS JOIN b_pday p "
    "CROSS JOIN b_shape s CROSS JOIN b_day d "
    "WHERE p.profile = m.profile AND s.shape = p.shape AND d.day = p.day",
]
SCRATCH = {  # name: columns, keyed on the first two
    "b_meter": ("meter_id", "building_id", "profile", "reg0", "sec", "hourly", "area", "target"),
    "b_pday": ("profile", "day", "shape", "used_before"),
    "b_shape": ("shape", "x", "total_wh", "first_wh", "last_s", "curve"),
    "b_hour": ("shape", "hour", "wh", "used_end"),
    "b_day": ("day", "x", "start_s", "day_text"),
    "b_topup": ("profile", "n", "day", "at_s", "amount"),
    "b_common": ("building_id", "day", "wh", "charge_fen", "head"),
    "b_area": ("building_id", "x", "area"),
}


def scratch_rows(homes: Households) -> dict[str, list[tuple]]:
    return {
        "b_meter": homes.meter_rows,
        "b_pday": PROFILE_DAYS,
        "b_shape": [(i, 0, s.total, s.first_wh, 60 * s.last_minute, s.curve)
                    for i, s in enumerate(SHAPES[:HOMES])],
        "b_hour": [(i, h, wh, sum(s.hours[:h + 1])) for i, s in enumerate(SHAPES[:HOMES])
                   for h, wh in enumerate(s.hours)],
        "b_day": [(i, 0, START_S + 86_400 * i,
                   f"{(START + dt.timedelta(days=i)).astimezone(CHINA_TZ).date()}")
                  for i in range(DAYS)],
        "b_topup": PROFILE_TOPUPS,
        "b_common": homes.commons,
        "b_area": [(b, 0, area) for b, area in building_areas(homes).items()],
    }


def building_areas(homes: Households) -> dict[int, int]:
    areas: dict[int, int] = {}
    for _a, b, *_, area, _target in homes.meter_rows:
        areas[b] = areas.get(b, 0) + area
    return areas


def statements(dialect: str) -> dict:
    """What the generated rows' times and dates are, as each database writes them."""
    at, stamp = AT[dialect], STAMP[dialect]
    return dict(
        at_hour=at.format(x=f"{START_S} + 86400 * p.day + 3600 * (h.hour + 1) + m.sec"),
        at_day=at.format(x=f"{START_S} + 86400 * (p.day + 1) + m.sec"),
        at_share=at.format(x="d.start_s + 86400 + 720"),
        at_paid=at.format(x="d.start_s + t.at_s + m.sec"),
        at_ordered=at.format(x="d.start_s + t.at_s + m.sec - 40"),
        stamp_ordered=stamp.format(x="d.start_s + t.at_s + m.sec - 40"),
        at_frozen=at.format(x="d.start_s + s.last_s + m.sec"),
        day="d.day_text" if dialect == "sqlite" else "CAST(d.day_text AS DATE)")


def build(url: str, homes: Households) -> float:
    """Write the households and their year into the migrated, empty database at `url`, and
    the two managers; returns the seconds taken."""
    t0 = time.perf_counter()
    engine = make_engine(url)
    with transaction(engine) as s:
        tariff = add_tariff(s, "北京居民阶梯", (EXAMPLES / "beijing_tiered.json").read_text(),
                            dt.date(2020, 1, 1))
    assert tariff.id == 1, tariff.id
    write_estate(engine, homes)
    engine.dispose()
    engine = bulk_engine(url)
    dialect = engine.dialect.name
    scratch = scratch_rows(homes)
    with engine.begin() as conn:
        for name, columns in SCRATCH.items():
            rows = scratch[name]
            types = ", ".join(f"{c} {'TEXT' if isinstance(v, str) else 'BIGINT'}"
                              for c, v in zip(columns, rows[0]))
            conn.exec_driver_sql(f"CREATE TEMP TABLE {name} ({types}, PRIMARY KEY ({columns[0]}, "
                                 f"{columns[1]})){' WITHOUT ROWID' if dialect == 'sqlite' else ''}")
            put(conn, name, columns, rows)
        if dialect == "postgresql":
            conn.exec_driver_sql("ANALYZE")  # the scratch tables: joined by hash, not nested
        restore = drop_for_load(conn) + drop_ledger_indexes(conn)
        for statement in GENERATED:
            conn.exec_driver_sql(statement.format(**statements(dialect)))
        others = payments_today(conn, homes) + refunds(conn, homes)
        openings, balances = opening(homes, others)
        put(conn, LedgerEntry.__table__, ENTRY, openings)
        driver_executemany(conn, "UPDATE account_balance SET balance_fen = {p}, entry_count = {p} "
                                 "WHERE account_id = {p}", [sa.column("x")] * 3, balances)
        for statement in restore:
            conn.exec_driver_sql(statement)
        check_balances(conn, homes.hourly + sorted(homes.state)[::len(homes.state) // 100])
        put(conn, ShareRun.__table__, RUN_COLUMNS, share_runs(homes.commons))
        events(conn, homes)
    if dialect == "postgresql":  # as autovacuum would have by then (and so will not, meanwhile)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
            conn.exec_driver_sql("CHECKPOINT")
    engine.dispose()
    engine = make_engine(url)
    with transaction(engine) as s:
        add_manager(s, "bench-admin", role=ESTATE_ADMIN, estate_id=1, password=PASSWORD)
        add_manager(s, "bench-b1", role=BUILDING_MANAGER, estate_id=1, password=PASSWORD,
                    building_ids=[FIRST])
    engine.dispose()
    return time.perf_counter() - t0


def drop_ledger_indexes(conn) -> list[str]:
    """SQLite: the ledger's (account_id, created_at) index too (built after the load in a
    tenth of what keeping it costs the load); returns the statement that puts it back."""
    if conn.dialect.name != "sqlite":
        return []
    found = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                                 "tbl_name = 'ledger_entry' AND sql IS NOT NULL").all()
    for name, _ in found:
        conn.exec_driver_sql(f"DROP INDEX {name}")
    return [sql for _, sql in found]


def write_estate(engine, homes: Households) -> None:
    """Estate, buildings, gateways, accounts (through their trigger: each opens its balance
    row) and meters."""
    shared = {}
    for b, _i, wh, charge, _head in homes.commons:
        exact_e7, posted = shared.get(b, (0, 0))
        shared[b] = (exact_e7 + wh * E7_PER_WH, posted + charge)
    with engine.begin() as conn:
        conn.execute(sa.insert(Estate.__table__), [{"id": 1, "name": "翠苑小区",
                                                    "manager_phone": "0571-88886666"}])
        conn.execute(sa.insert(Building.__table__), [
            {"id": b, "estate_id": 1, "name": f"{b - FIRST + 1}号楼", "share_scheme": "area",
             "shared_exact_e7": exact_e7, "shared_fen": posted}
            for b, (exact_e7, posted) in sorted(shared.items())])
        conn.execute(sa.insert(Gateway.__table__), [
            {"id": b + 1, "name": f"{b + 1}号楼集中器", "host": "127.0.0.1", "port": 15_000 + b}
            for b in range(homes.buildings)])
        conn.execute(sa.insert(Account.__table__), homes.accounts)
        conn.execute(sa.insert(Meter.__table__), homes.meters)


RUN_COLUMNS = ("building_id", "period_start", "period_end", "scheme", "energy_wh", "exact_e7",
               "charge_fen", "households", "created_at")


def share_runs(commons: list[tuple]) -> list[tuple]:
    rows = []
    for b, i, wh, charge, _head in commons:
        start = START + dt.timedelta(days=i)
        rows.append((b, start, start + dt.timedelta(days=1), "area", wh, wh * E7_PER_WH, charge,
                     PER_BUILDING, start + dt.timedelta(days=1, minutes=12)))
    return rows


def insert_rows(conn, table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """A few rows (tuples in `columns` order), the model's defaults filling the other columns."""
    if rows:
        conn.execute(sa.insert(table.__table__), [dict(zip(columns, row)) for row in rows])


def payments_today(conn, homes: Households) -> list[tuple]:
    """Today's payments (orders, top-ups, notices); returns their ledger rows."""
    rng, orders, entries = random.Random(SEED + 1), [], []
    for k, a in enumerate(homes.paid_today):
        paid, amount = END + (NOW - END) * rng.random(), rng.choice(TOPUP_FEN)
        no = f"FK{paid:%Y%m%d%H%M%S}T{a}"
        orders.append((no, a, amount, "alipay", PAID, f"2026{a}{k}",
                       paid - dt.timedelta(seconds=40), paid, 0))
        entries.append((a, amount, TOPUP, f"order:{no}", f"alipay 2026{a}{k}", None, paid))
    insert_rows(conn, Order, ("out_trade_no", "account_id", "amount_fen", "channel", "status",
                              "provider_trade_no", "created_at", "paid_at", "query_count"), orders)
    insert_rows(conn, LedgerEntry, ENTRY, entries)
    insert_rows(conn, Notice, ("account_id", "kind", "amount_fen", "created_at"),
                [(a, PAYMENT_RECEIVED, amount, paid) for a, amount, *_, paid in entries])
    return entries


def refunds(conn, homes: Households) -> list[tuple]:
    """50 元 refunded two days after the last payment of a few measured accounts; returns the
    refunds' ledger rows."""
    refunded = [a for a in homes.hourly if homes.state[a] == "normal"][:REFUNDS]
    last = {a: (order_id, paid) for order_id, a, paid in conn.execute(
        sa.select(Order.id, Order.account_id, Order.paid_at)
        .where(Order.account_id.in_(refunded)).order_by(Order.id))}
    rows, entries = [], []
    for a, (order_id, paid) in sorted(last.items()):
        at = paid + dt.timedelta(days=2)
        no = f"RF{at:%Y%m%d%H%M%S}{a}"
        rows.append((no, order_id, a, "wechat", 5_000, REFUND_SUCCEEDED, "decision", "住户要求",
                     "bench-admin", f"50{no}", at, at, at + dt.timedelta(minutes=3)))
        entries.append((a, -5_000, REFUND, f"refund:{no}", "退款 50.00 元", None, at))
    insert_rows(conn, Refund, ("out_refund_no", "order_id", "account_id", "channel",
                               "amount_fen", "status", "reason", "note", "requested_by",
                               "provider_refund_no", "created_at", "submitted_at",
                               "confirmed_at"), rows)
    insert_rows(conn, LedgerEntry, ENTRY, entries)
    return entries


def opening(homes: Households, others: list[tuple]) -> tuple[list, list]:
    """Each account's `opening` entry, a year ago, that brings its balance to its target, and
    its `account_balance` row as the triggers would have left it: (balance, entries, id). The
    generated entries summed as generated: a year's charges come to the fen of its Wh (the
    rounded running total telescopes), the shares and top-ups as the statements compute them;
    `others`: the ledger rows written from here."""
    shares, areas, topups = {}, building_areas(homes), {}
    for b, _i, _wh, charge, _head in homes.commons:
        shares.setdefault(b, []).append(charge)
    for p, _n, _i, _at, amount in PROFILE_TOPUPS:
        total, n = topups.get(p, (0, 0))
        topups[p] = (total + amount, n + 1)
    moved = {}
    for a, amount, *_ in others:
        total, n = moved.get(a, (0, 0))
        moved[a] = (total + amount, n + 1)
    entries, balances, at = [], [], START - HOUR
    for a, b, profile, _reg0, _sec, hourly, area, target in homes.meter_rows:
        total, n = topups.get(profile, (0, 0))
        total, n = total - fen(PROFILE_WH[profile]), n + DAYS * (24 if hourly else 1)
        if hourly:
            total, n = total - sum(charge * area // areas[b] for charge in shares[b]), n + DAYS
        total, n = total + moved.get(a, (0, 0))[0], n + moved.get(a, (0, 0))[1]
        entries.append((a, target - total, OPENING, f"opening:{a}", "开户余额", None, at))
        balances.append((target, n + 1, a))
    return entries, balances


def check_balances(conn, account_ids: list[int]) -> None:
    """The kept balances of these accounts are their ledgers' sums (and counts)."""
    summed = conn.execute(sa.select(LedgerEntry.account_id, sa.func.sum(LedgerEntry.amount_fen),
                                    sa.func.count()).where(LedgerEntry.account_id.in_(account_ids))
                          .group_by(LedgerEntry.account_id)).all()
    kept = conn.execute(sa.select(AccountBalance.account_id, AccountBalance.balance_fen,
                                  AccountBalance.entry_count)
                        .where(AccountBalance.account_id.in_(account_ids))).all()
    assert sorted(map(tuple, summed)) == sorted(map(tuple, kept)), "a kept balance ≠ its ledger"


def events(conn, homes: Households) -> None:
    """What the worker and the cut policy left: commands with their attempts, cut decisions,
    approvals, tasks, anomalies, notices (commands with ids: their attempts refer to them)."""
    rng, ids = random.Random(SEED + 2), itertools.count(1)
    commands, attempts, decisions, notices, approvals, tasks, anomalies = ([] for _ in range(7))

    def command(a, action, at, done=True):
        cid = next(ids)
        commands.append((cid, a, action, DONE if done else PENDING, f"{action} by policy", at,
                         at + 24 * HOUR, at, 2 if done else 0,
                         at + dt.timedelta(seconds=40) if done else None))
        if done:
            attempts.append((cid, at, at + dt.timedelta(seconds=5), "timeout", None, None,
                             "no answer in 5 s"))
            attempts.append((cid, at + dt.timedelta(seconds=35), at + dt.timedelta(seconds=40),
                             "confirmed", None, action == CUT, "relay read back"))
        return cid

    def cut(a, at):
        decisions.append((a, a, at, CUT_OUTCOME, "cut", "余额用尽，已通知 24 小时", None,
                          -rng.randrange(50, 3_000), command(a, CUT, at)))
        notices.append((a, POWER_CUT, None, at + dt.timedelta(minutes=1)))

    for a, state in sorted(homes.state.items()):
        exhausted_at = homes.account(a)["exhausted_at"]
        if state in ("cut", "exhausted"):
            notices.append((a, BALANCE_EXHAUSTED, None, exhausted_at))
        if state == "cut":
            cut(a, exhausted_at + 24 * HOUR)
        elif state == "exhausted":
            decisions.append((a, a, exhausted_at + HOUR, WAIT, "notice_lead", "通知未满 24 小时",
                              exhausted_at + 24 * HOUR, -rng.randrange(50, 3_000), None))
            if len(approvals) < 10:
                approvals.append((a, a, "pending", -rng.randrange(50, 3_000), exhausted_at))
            elif rng.random() < 0.3:
                command(a, CUT, NOW - HOUR, done=False)
        elif state == "low":
            notices.append((a, LOW_BALANCE, None, END - rng.randrange(1, 72) * HOUR))
        if a in homes.care and state in ("cut", "exhausted"):
            tasks.append((CARE_LIST_EXHAUSTED, a, a, "爱心档案住户余额用尽：请联系", exhausted_at))
        if a in homes.offline:
            anomalies.append((METER_OFFLINE, a, a, "连续 3 次抄表失败", NOW - 9 * HOUR, None))
    for a in homes.hourly:  # an episode a month ago: cut, paid, restored
        at = END - dt.timedelta(days=rng.randrange(20, 40), hours=rng.randrange(10))
        cut(a, at)
        command(a, RESTORE, at + 5 * HOUR)
        notices.append((a, POWER_RESTORED, None, at + 5 * HOUR))
    for k, a in enumerate(rng.sample(sorted(homes.state), 10)):
        anomalies.append((ENERGY_JUMP, a, a, "一分钟 40 kWh", END - 30 * HOUR,
                          END if k % 2 else None))
    for table, columns, rows in (
            (Command, ("id", "meter_id", "action", "state", "reason", "created_at", "expires_at",
                       "next_attempt_at", "attempts", "completed_at"), commands),
            (CommandAttempt, ("command_id", "started_at", "finished_at", "outcome",
                              "exception_code", "relay_open", "detail"), attempts),
            (CutDecision, ("meter_id", "account_id", "decided_at", "outcome", "code", "reason",
                           "not_before", "balance_fen", "command_id"), decisions),
            (CutApproval, ("meter_id", "account_id", "state", "balance_fen", "requested_at"),
             approvals),
            (ManagerTask, ("kind", "account_id", "meter_id", "detail", "created_at"), tasks),
            (Anomaly, ("kind", "meter_id", "account_id", "detail", "created_at", "resolved_at"),
             anomalies),
            (Notice, ("account_id", "kind", "amount_fen", "created_at"), notices)):
        insert_rows(conn, table, columns, rows)
    if conn.dialect.name == "postgresql":  # past the ids written
        conn.exec_driver_sql("SELECT setval('command_id_seq', (SELECT max(id) FROM command))")


# --- the measurement ------------------------------------------------------------------------------

ROW = re.compile(r'<tr class="account">\s*<td><a href="/manage/accounts/(\d+)">')


class Pages:
    """The measured requests, in turn, and what each answer must show, for a manager of
    `building_ids` (None: the estate)."""

    def __init__(self, homes: Households, building_ids: set[int] | None):
        def seen(a: int) -> bool:
            return building_ids is None or homes.account(a)["building_id"] in building_ids

        self.homes = homes
        self.buildings = [f"{b - FIRST + 1}号楼" for b in range(FIRST, FIRST + homes.buildings)
                          if building_ids is None or b in building_ids]
        self.low = {a for a, s in homes.state.items() if s != "normal" and seen(a)}
        self.cut = {a for a, s in homes.state.items() if s == "cut" and seen(a)}
        self.accounts = [a for a in homes.hourly if seen(a)]
        self.paid_today = len([a for a in homes.paid_today if seen(a)])
        self.searches = []  # (q, the 户号 of the first page it must show)
        rng, visible = random.Random(SEED + 3), [homes.account(a) for a in homes.state if seen(a)]
        for row in rng.sample(visible, 30):
            for q in (row["number"][3:], row["household"][:-2], row["holder_name"][:1]):
                self.searches.append((q, sorted(
                    b["number"] for b in visible
                    if q in b["number"] or q in b["household"] or q in b["holder_name"])[:50]))

    def rounds(self):
        """Endless rounds, each a list of (page, path, check of the answer's text); the
        dashboard."""
        for k in itertools.count():
            q, found = self.searches[k % len(self.searches)]
            a = self.homes.account(self.accounts[k % len(self.accounts)])
            yield [("dashboard", "/manage/", self.check_dashboard)] + [
                ("accounts_low", "/manage/accounts?state=low",
                 lambda text: self.check_list(text, self.low)),
                ("accounts_cut", "/manage/accounts?state=cut",
                 lambda text: self.check_list(text, self.cut)),
                ("search", f"/manage/accounts?q={q}",
                 lambda text, found=found: self.check_search(text, found)),
                ("account", f"/manage/accounts/{a['number']}",
                 lambda text, a=a: self.check_account(text, a))]

    def check_dashboard(self, text: str) -> None:
        assert text.count('<tr class="building">') == len(self.buildings)
        assert all(f">{name}</a>" in text for name in self.buildings)
        for state, expected in (("low", self.low), ("cut", self.cut)):
            counted = sum(map(int, re.findall(rf'state={state}">(\d+)</a>', text)))
            assert counted == len(expected), (state, counted, len(expected))
        paid = re.search(r'<span class="n">(\d+)</span>今日充值笔数', text)
        assert paid and int(paid[1]) == self.paid_today, (paid, self.paid_today)

    def check_list(self, text: str, expected: set[int]) -> None:
        shown = {int(n) - 6_600_000 for n in ROW.findall(text)}
        assert len(shown) == min(50, len(expected)) and shown <= expected, sorted(shown)[:5]

    def check_search(self, text: str, found: list[str]) -> None:
        assert ROW.findall(text) == found, (ROW.findall(text)[:5], found[:5])

    def check_account(self, text: str, a: dict) -> None:
        assert f"{a['household']} · 户号 {a['number']}" in text
        assert text.count('class="entry folded"') >= 100  # the newest days' hourly charges


def log_in(client: TestClient, name: str) -> None:
    """Through the real form: the login page sets asgi-csrf's cookie, the form sends it back."""
    assert client.get("/manage/login").status_code == 200
    response = client.post("/manage/login", data={
        "name": name, "password": PASSWORD, "csrftoken": client.cookies["csrftoken"]})
    assert response.status_code == 303, response.status_code


def measure(url: str, homes: Households, var_dir: Path) -> dict[str, dict[str, list[float]]]:
    """Seconds of each request by page, as the estate administrator ("admin") and as the
    building manager ("bm")."""
    gc.collect()
    gc.freeze()  # what is left (the app, the plan) is not walked by the collector again
    engine = make_engine(url)
    app = create_app(Settings(database_url=url, var_dir=var_dir), engine)
    out = {}
    for who, name, scope, rounds in (("admin", "bench-admin", None, ROUNDS),
                                     ("bm", "bench-b1", {FIRST}, BM_ROUNDS)):
        out[who] = {}
        with TestClient(app, follow_redirects=False) as client:
            log_in(client, name)
            for k, requests in enumerate(itertools.islice(Pages(homes, scope).rounds(),
                                                          WARM_UP + rounds)):
                for page, path, check in requests:
                    t0 = time.perf_counter()
                    response = client.get(path)
                    seconds = time.perf_counter() - t0
                    assert response.status_code == 200, (path, response.status_code)
                    check(response.text)
                    if k >= WARM_UP:
                        out[who].setdefault(page, []).append(seconds)
    engine.dispose()
    gc.unfreeze()
    return out


def percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def report(prefix: str, times: dict[str, dict[str, list[float]]]) -> list[str]:
    lines = []
    for page, samples in times["admin"].items():
        lines += [f"{prefix}{page}_p50_ms: {percentile(samples, 50) * 1e3:.1f} ms",
                  f"{prefix}{page}_p99_ms: {percentile(samples, 99) * 1e3:.1f} ms"]
    for who, name in (("admin", "console"), ("bm", "bm_console")):
        every = [x for samples in times[who].values() for x in samples]
        lines += [f"{prefix}{name}_p50_ms: {percentile(every, 50) * 1e3:.1f} ms",
                  f"{prefix}{name}_p99_ms: {percentile(every, 99) * 1e3:.1f} ms"]
    return lines


def entries(url: str) -> int:
    """The ledger's entries, as kept."""
    engine = make_engine(url)
    with engine.connect() as conn:
        found = conn.execute(sa.select(sa.func.sum(AccountBalance.entry_count))).scalar()
    engine.dispose()
    return int(found)


def main() -> None:
    wall, tmp = time.perf_counter(), Path(tempfile.mkdtemp(prefix="feikong-bench-console-"))
    (tmp / "var").mkdir()
    lines = []
    try:
        with throwaway_postgres() as server:
            with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
                conn.execute("CREATE DATABASE console")
            urls = {"": f"sqlite:///{tmp / 'console.db'}", "pg_": f"{server}/console"}
            t = time.perf_counter()
            for url in urls.values():  # one at a time: alembic's context is global
                upgrade(url)
            homes = {"": Households(ACCOUNTS), "pg_": Households(PG_ACCOUNTS)}
            lines.append(f"setup_s_migrations_plan: {time.perf_counter() - t:.1f} s")
            with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both at once
                built = {db: pool.submit(build, url, homes[db]) for db, url in urls.items()}
                lines += [f"{db}setup_s: {future.result():.1f} s" for db, future in built.items()]
            t = time.perf_counter()
            os.sync()  # the loads' pages on disk now, not written back while we measure
            lines.append(f"sync_s: {time.perf_counter() - t:.1f} s")
            for db, url in urls.items():
                lines += [f"{db}accounts: {len(homes[db].state)} accounts",
                          f"{db}ledger_entries: {entries(url)} rows",
                          f"{db}daily_frozen: {len(homes[db].state) * DAYS} rows"]
                t = time.perf_counter()
                lines += report(db, measure(url, homes[db], tmp / "var"))
                lines.append(f"{db}measure_s: {time.perf_counter() - t:.1f} s")
        lines.append(f"sqlite_mb: {os.path.getsize(tmp / 'console.db') / 1e6:.0f} MB")
        lines.append(f"wall_s: {time.perf_counter() - wall:.0f} s")
        print("\n".join(lines))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
