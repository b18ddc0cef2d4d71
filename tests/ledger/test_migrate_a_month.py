"""A database as the code before kept balances and hourly charges left it (schema 0008: a
charge per reading, readings kept for ever), with a month of readings and charges, moved to the
new design by the migrations: every balance and every month's totals unchanged to the fen, the
meters' days built from the readings, and the worker going on from there."""

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from alembic import command
from sqlmodel import select

from app.db import make_engine, transaction
from app.estate.models import DailyFrozen
from app.ledger.checks import verify_balances
from app.ledger.models import LedgerEntry
from app.ledger.services import balances_fen
from app.migrate import alembic_config, upgrade
from app.money import E7, energy_cost, post_increment
from meters.store import ReadingResult, record_readings

UTC = dt.timezone.utc
START = dt.datetime(2026, 10, 31, 16, tzinfo=UTC)  # local midnight, 1 November
PRICE = Decimal("0.5583")


_TABLES: dict = {}


def insert(conn, table_name: str, **values) -> int:
    """A row as that schema takes it: columns not given and not nullable get 0, False or ''."""
    table = _TABLES.get(table_name)
    if table is None:
        table = _TABLES[table_name] = sa.Table(table_name, sa.MetaData(), autoload_with=conn)
    for column in table.columns:
        if column.name in values or column.nullable or column.primary_key:
            continue
        if column.server_default is None:
            python = column.type.python_type
            values[column.name] = {bool: False, str: ""}.get(python, 0)
    return conn.execute(table.insert().values(**values)).inserted_primary_key[0]


def build_old_month(conn) -> dict:
    """Three households polled hourly through November (the last one idle), charged per reading
    as the old worker did; returns the figures the migrations must keep."""
    insert(conn, "estate", id=1, name="翠苑", quiet_start="20:00", quiet_end="08:00",
           holiday_calendar="cn", cut_notice_lead_h=24)
    insert(conn, "building", id=1, estate_id=1, name="1号楼", share_scheme="area",
           share_period="day", common_price_yuan_per_kwh="0.5583")
    insert(conn, "gateway", id=1, name="gw", host="127.0.0.1", port=502)
    expected = {}
    for n, rate_wh in enumerate((270, 415, 0), start=1):
        insert(conn, "account", id=n, number=f"10101{n}", building_id=1, household=f"1-1-{n}",
               price_yuan_per_kwh="0.5583", floor_area_m2="89.5", low_balance_threshold_fen=1000,
               created_at=START - dt.timedelta(days=40))
        insert(conn, "ledger_entry", account_id=n, amount_fen=20_000, kind="topup",
               idempotency_key=f"order:FK{n}", memo="", created_at=START)
        exact, posted, register, energy = Decimal(0), 0, 50_000 * n, 0
        read_at = START
        meter = insert(conn, "meter", id=n, account_id=n, gateway_id=1, unit_id=n,
                       relay_open=False, online=True, max_power_w=13_800)
        insert(conn, "reading", meter_id=meter, read_at=read_at, energy_wh=register,
               relay_open=False)
        for hour in range(1, 30 * 24 + 1):
            read_at = START + dt.timedelta(hours=hour)
            wh = rate_wh + (hour * 37 % 90) if rate_wh else 0
            if not wh:
                continue
            cost = energy_cost(wh, PRICE)
            fen = post_increment(exact, cost)
            insert(conn, "ledger_entry", account_id=n, amount_fen=-fen, kind="charge",
                   idempotency_key=f"charge:{meter}:{register}:{register + wh}",
                   memo=f"{wh} Wh × 0.5583 元/kWh", energy_wh=wh, created_at=read_at)
            insert(conn, "reading", meter_id=meter, read_at=read_at, energy_wh=register + wh,
                   relay_open=False)
            exact, posted, register, energy = exact + cost, posted + fen, register + wh, energy + wh
        conn.execute(sa.text("UPDATE meter SET billed_exact_e7 = :e, billed_fen = :f, "
                             "last_energy_wh = :r, last_read_at = :t WHERE id = :m"),
                     {"e": int(exact * E7), "f": posted, "r": register, "m": meter,
                      "t": read_at.replace(tzinfo=None) if conn.dialect.name == "sqlite"
                      else read_at})
        expected[n] = {"balance": 20_000 - posted, "energy": energy, "last": (register, read_at)}
    return expected


def month_totals(engine) -> list[tuple]:
    with transaction(engine, read_only=True) as s:
        rows = s.exec(select(LedgerEntry.account_id, LedgerEntry.kind, LedgerEntry.amount_fen,
                             LedgerEntry.energy_wh, LedgerEntry.created_at)).all()
    totals: dict = {}
    for account_id, kind, amount, wh, at in rows:
        key = (account_id, kind, at.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m"))
        fen, energy = totals.get(key, (0, 0))
        totals[key] = (fen + amount, energy + (wh or 0))
    return sorted(totals.items())


def test_a_month_of_the_old_design_migrates_without_moving_a_fen(database_url):
    command.downgrade(alembic_config(database_url), "0008")
    _TABLES.clear()
    engine = make_engine(database_url)
    with engine.begin() as conn:
        expected = build_old_month(conn)
    before = month_totals(engine)
    upgrade(database_url)

    with transaction(engine, read_only=True) as s:
        assert balances_fen(s, {1, 2, 3}) == {n: e["balance"] for n, e in expected.items()}
        days = s.exec(select(DailyFrozen)).all()
    assert month_totals(engine) == before
    assert verify_balances(engine).mismatches == []
    used = {n: sum(d.used_wh for d in days if d.meter_id == n) for n in expected}
    assert used == {n: e["energy"] for n, e in expected.items()}  # the month, from the days
    assert len([d for d in days if d.meter_id == 1]) == 31  # 1 November … 1 December 00:00

    # The worker goes on from the migrated meters: the next hour accrues, then posts.
    register, last = expected[1]["last"]
    record_readings(engine, [ReadingResult(1, register + 300, False, last + dt.timedelta(hours=1))])
    record_readings(engine, [ReadingResult(1, register + 600, False, last + dt.timedelta(hours=2))])
    with transaction(engine, read_only=True) as s:
        assert balances_fen(s, {1})[1] == expected[1]["balance"] - 34  # 600 Wh: 33.498 分
    assert verify_balances(engine).mismatches == []
    engine.dispose()
