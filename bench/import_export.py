"""Bringing an estate in and its bills out, at 10,000 households, on SQLite. No set-up: a
migrated SQLite file in a temporary directory.

Import: a workbook of 50 buildings of 200 households (10,000 accounts, each with its meter,
a phone, a floor area and an opening balance) on 50 gateways (a Modbus bus takes at most 247
unit addresses, so 10,000 meters need at least 41), written from the template with openpyxl
(not timed), is imported into a fresh estate by `app.estate.importing.import_file`, as
`feikong import` does: read (python-calamine), every row checked, written in one transaction,
committed. Timed from the file's bytes to the commit: `import_10k_s` (goal < 60 s), with the
reading alone (`read_10k_s`; and `read_openpyxl_10k_s`, the same rows read by openpyxl's
read-only mode, which the import used before) and the check (`check_10k_s`) beside it. Then checked:
10,000 accounts and meters, every opening balance in the ledger (their sum to the fen), and a
second import of the same file changes nothing (`reimport_10k_s`).

Export: a month of these 10,000 households' money is then written in bulk, the rows the
services write (the load's trigger and `created_at` index off, as bench.console loads; each
kept balance then set to its ledger's sum and checked): the last complete local month, a
`charge` per household and local hour posted at the next hour's first poll (key
`charge:<meter>:<from Wh>:<to Wh>`, the step of the rounded running total, memo in
`describe_accrued`'s words: half the buildings on a time-of-use tariff, "peak 280 Wh × 0.568"
08:00–22:00 and "valley … × 0.288" the rest, the others "280 Wh × 0.5583 元/kWh"; the hours'
Wh from 16 profiles, 10 Wh steps), a `share` a day, two top-ups, a refund for one household in
100 and an adjustment for one in 97: about 7.5 M entries. Then the month's bills of all 50
buildings are exported to XLSX as the console's background job does it (`app.batch`: the job
queued, the runner runs it: read in one snapshot, chunk by chunk of 500 households, the file
written by openpyxl's write-only mode, the export audited): `export_bills_10k_s`, from the
job's start to its end; the workbook is read back (not timed) and its totals row compared
with the ledger's sums of the month, to the fen.

The console chart's top-ups: the month's top-ups given their paid orders (not timed), the
chart's query for 30 days of every building (`app.console.charts.top_ups_query`, through the
orders' (status, paid_at) index and the ledger's unique key) timed against the ledger scan it
replaced, the figures equal day by day; its plan printed.

    python -m bench.import_export
"""

from __future__ import annotations

import datetime as dt
import io
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from openpyxl import Workbook

from decimal import Decimal

from app.db import make_engine, transaction, utcnow
from app.estate.importing import import_file
from app.estate.importing.read import _read_xlsx_openpyxl, read_file
from app.estate.importing.spec import ACCOUNTS, BUILDINGS, GATEWAYS
from app.estate.models import Account, Estate, Meter
from app.ledger.checks import verify_balances
from app.ledger.days import day_start, local_day
from app.ledger.models import (ADJUSTMENT, CHARGE, OPENING, REFUND, SHARE, TOPUP,
                               LedgerEntry)
from app.migrate import upgrade
from app.money import energy_cost, fen_to_yuan_str, to_fen
from app.resident.statements import month_of, next_month, previous_month
from app.tariffs import CHINA_TZ

BUILDING_COUNT, PER_BUILDING = 50, 200
ACCOUNT_COUNT = BUILDING_COUNT * PER_BUILDING


def estate_workbook(seed: int = 16) -> tuple[bytes, int]:
    """The 10,000-household workbook, and the sum of its opening balances in fen."""
    rng = random.Random(seed)
    book = Workbook(write_only=True)
    sheets = {}
    for sheet in (BUILDINGS, GATEWAYS, ACCOUNTS):
        ws = book.create_sheet(sheet.title)
        ws.append([c.header for c in sheet.columns])
        sheets[sheet.key] = (ws, [c.key for c in sheet.columns])

    def append(key: str, row: dict) -> None:
        ws, keys = sheets[key]
        ws.append([row.get(k) for k in keys])

    total = 0
    for b in range(BUILDING_COUNT):
        building, gateway = f"{b + 1}号楼", f"{b + 1}号楼集中器"
        append("buildings", {"name": building, "share_scheme": "按面积", "share_period": "按日"})
        append("gateways", {"name": gateway, "host": f"10.0.{b // 200}.{b % 200 + 10}",
                            "port": 502, "protocol": "modbus_tcp"})
        for unit in range(1, PER_BUILDING + 1):
            floor, room = (unit - 1) // 8 + 1, (unit - 1) % 8 + 1
            fen = rng.randrange(-2_000, 60_000)
            total += fen
            append("accounts", {
                "number": f"{b + 1:03d}{unit:04d}", "building": building,
                "household": f"{b + 1}-{floor}-{floor:02d}{room:02d}",
                "holder_name": "王" + "伟芳娜敏静丽强磊军洋"[unit % 10],
                "phone": f"13{rng.randrange(5, 10)}{rng.randrange(10**8):08d}",
                "floor_area": f"{rng.randrange(6000, 14000) / 100:.2f}",
                "gateway": gateway, "unit": unit, "price": "0.5583",
                "opening": fen_to_yuan_str(fen), "care": "是" if unit % 97 == 0 else "否"})
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue(), total


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        url = f"sqlite:///{tmp / 'import.db'}"
        t0 = time.perf_counter()
        upgrade(url)
        engine = make_engine(url)
        with transaction(engine) as s:
            estate = Estate(name="bench")
            s.add(estate)
            s.flush()
            estate_id = estate.id
        data, opening_total = estate_workbook()
        setup_s = time.perf_counter() - t0

        t1 = time.perf_counter()
        read = read_file(data)
        read_s = time.perf_counter() - t1
        t1 = time.perf_counter()
        by_openpyxl = _read_xlsx_openpyxl(data)
        read_openpyxl_s = time.perf_counter() - t1
        assert [[(r.number, r.cells) for r in s.rows] for s in read[0].values()] == \
            [[(r.number, r.cells) for r in s.rows] for s in by_openpyxl[0].values()]
        t1 = time.perf_counter()
        with transaction(engine, read_only=True) as s:
            checked = import_file(s, data, estate_id=estate_id, dry_run=True)
        check_s = time.perf_counter() - t1
        assert checked.ok and not checked.written, [p.text() for p in checked.problems[:5]]

        t1 = time.perf_counter()
        with transaction(engine) as s:
            result = import_file(s, data, estate_id=estate_id, file_name="bench.xlsx")
        import_s = time.perf_counter() - t1
        assert result.ok and result.written, [p.text() for p in result.problems[:5]]

        with transaction(engine, read_only=True) as s:
            accounts = s.execute(sa.select(sa.func.count()).select_from(Account)).scalar()
            meters = s.execute(sa.select(sa.func.count()).select_from(Meter)
                               .where(Meter.account_id.is_not(None))).scalar()
            openings, ledger_sum = s.execute(
                sa.select(sa.func.count(), sa.func.sum(LedgerEntry.amount_fen))
                .where(LedgerEntry.kind == OPENING)).one()
            entries_before = s.execute(sa.select(sa.func.count())
                                       .select_from(LedgerEntry)).scalar()
        assert accounts == meters == ACCOUNT_COUNT, (accounts, meters)
        assert ledger_sum == opening_total, (ledger_sum, opening_total)

        t1 = time.perf_counter()
        with transaction(engine) as s:
            again = import_file(s, data, estate_id=estate_id, file_name="bench.xlsx")
        reimport_s = time.perf_counter() - t1
        assert again.ok and not again.changes, again.change_lines(5)
        with transaction(engine, read_only=True) as s:
            assert s.execute(sa.select(sa.func.count()).select_from(LedgerEntry)).scalar() \
                == entries_before
        engine.dispose()

        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"setup_s: {setup_s:.1f} (migrate, write the {len(data) // 1024} KB workbook)")
        print(f"read_10k_s: {read_s:.2f} (python-calamine)")
        print(f"read_openpyxl_10k_s: {read_openpyxl_s:.2f} (openpyxl, read-only: the same rows)")
        print(f"check_10k_s: {check_s:.2f} (read and check every row: a dry run)")
        print(f"import_10k_s: {import_s:.2f} s ({ACCOUNT_COUNT} accounts, {meters} meters, "
              f"{BUILDING_COUNT} gateways; {openings} opening entries, "
              f"{fen_to_yuan_str(ledger_sum)} 元 = the workbook's sum)")
        print(f"reimport_10k_s: {reimport_s:.2f} (the same file again: nothing changed)")
        month, load_s, entries = write_month(url)
        export_s, export_rows, size = export_bills(url, tmp, estate_id, month)
        print(f"month_load_s: {load_s:.1f} ({entries} entries of {month:%Y-%m}, in bulk)")
        print(f"export_bills_10k_s: {export_s:.2f} ({export_rows} households of {month:%Y-%m}, "
              f"{BUILDING_COUNT} buildings, XLSX {size // 1024} KB, by the background job; "
              f"totals = the ledger's to the fen)")
        orders, found_s, scan_s, plan = chart_top_ups(url, month)
        print(f"chart_top_ups_30d_s: {found_s:.3f} (the console chart's top-ups of 30 days, "
              f"{BUILDING_COUNT} buildings, through {orders} paid orders; = the ledger's, day by "
              f"day, to the fen)")
        print(f"chart_top_ups_scan_30d_s: {scan_s:.2f} (the same from the ledger's entries of "
              f"the days, as the chart read them before)")
        print("chart_top_ups_plan: " + " | ".join(plan))
        print(f"peak_rss_mb: {peak_mb:.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- a month of money, and its bills exported -----------------------------------------------------

PROFILES, SEED = 16, 1616
PEAK, VALLEY, FLAT = Decimal("0.568"), Decimal("0.288"), Decimal("0.5583")


def _last_month() -> dt.date:
    return previous_month(month_of(local_day(utcnow())))


def write_month(url: str) -> tuple[dt.date, float, int]:
    """The last complete local month of every household, in bulk (see the docstring); returns
    the month, the seconds taken and the ledger's entries in the month."""
    from bench.console import drop_ledger_indexes
    from bench.years import bulk_engine, drop_for_load, put

    t0 = time.perf_counter()
    month = _last_month()
    start, end = day_start(month), day_start(next_month(month))
    hours = int((end - start).total_seconds() // 3600)
    rng = random.Random(SEED)
    engine = bulk_engine(url)
    at_of = LedgerEntry.__table__.c.created_at.type.dialect_impl(engine.dialect) \
        .bind_processor(engine.dialect)
    at = (lambda moment: at_of(moment)) if at_of else (lambda moment: moment)
    hour_rows = []
    for profile in range(PROFILES):
        register, exact = {"tou": Decimal(0), "flat": Decimal(0)}, 0
        for k in range(hours):
            begin = start + dt.timedelta(hours=k)
            local_hour = begin.astimezone(CHINA_TZ).hour
            wh = rng.randrange(3, 60 + 40 * (8 <= local_hour < 23)) * 10
            peak = 8 <= local_hour < 22
            fens = {}
            for kind, price in (("tou", PEAK if peak else VALLEY), ("flat", FLAT)):
                before = register[kind]
                register[kind] = before + energy_cost(wh, price)
                fens[kind] = to_fen(register[kind]) - to_fen(before)
            memo_tou = f"{'peak' if peak else 'valley'} {wh} Wh × {PEAK if peak else VALLEY}"
            hour_rows.append((profile, k, exact, exact + wh, wh, fens["tou"], fens["flat"],
                              memo_tou, f"{wh} Wh × {FLAT} 元/kWh",
                              at(begin + dt.timedelta(hours=1, seconds=30))))
            exact += wh
    days = (end - start).days
    day_rows = [(d, (month + dt.timedelta(days=d)).isoformat(),
                 at(start + dt.timedelta(days=d + 1, minutes=12))) for d in range(days)]
    with engine.begin() as conn:
        restore = drop_for_load(conn) + drop_ledger_indexes(conn)
        conn.exec_driver_sql("CREATE TEMP TABLE b_hour (profile INT, k INT, from_wh INT, "
                             "to_wh INT, wh INT, fen_tou INT, fen_flat INT, memo_tou TEXT, "
                             "memo_flat TEXT, at TEXT)")
        conn.exec_driver_sql("CREATE TEMP TABLE b_day (d INT, label TEXT, at TEXT)")
        conn.exec_driver_sql("CREATE TEMP TABLE b_acct (account_id INT, meter_id INT, "
                             "building_id INT, profile INT, tou INT)")
        put(conn, "b_hour", ("profile", "k", "from_wh", "to_wh", "wh", "fen_tou", "fen_flat",
                             "memo_tou", "memo_flat", "at"), hour_rows)
        put(conn, "b_day", ("d", "label", "at"), day_rows)
        conn.exec_driver_sql(
            f"INSERT INTO b_acct SELECT a.id, m.id, a.building_id, a.id % {PROFILES}, "
            "a.building_id % 2 FROM account a JOIN meter m ON m.account_id = a.id")
        into = ("INSERT INTO ledger_entry (account_id, amount_fen, kind, idempotency_key, memo, "
                "energy_wh, created_at) ")
        conn.exec_driver_sql(
            into + "SELECT a.account_id, -(CASE WHEN a.tou = 1 THEN h.fen_tou ELSE h.fen_flat "
            "END), 'charge', 'charge:' || a.meter_id || ':' || (1000000 + h.from_wh) || ':' || "
            "(1000000 + h.to_wh), CASE WHEN a.tou = 1 THEN h.memo_tou ELSE h.memo_flat END, "
            "h.wh, h.at FROM b_acct a CROSS JOIN b_hour h WHERE h.profile = a.profile")
        conn.exec_driver_sql(
            into + "SELECT a.account_id, -(15 + a.profile), 'share', 'share:' || a.building_id "
            "|| ':' || d.label || ':' || a.account_id, '公摊 按面积', NULL, d.at "
            "FROM b_acct a CROSS JOIN b_day d")
        for n, day in ((1, 3), (2, 17)):
            conn.exec_driver_sql(
                into + f"SELECT a.account_id, {n} * 10000, 'topup', 'order:FKB' || "
                f"a.account_id || '-{n}', CASE WHEN a.account_id % 2 = 0 THEN 'wechat 4200' "
                f"ELSE 'alipay 2026' END || a.account_id, NULL, d.at FROM b_acct a "
                f"CROSS JOIN b_day d WHERE d.d = {day} + a.profile % 5")
        conn.exec_driver_sql(
            into + "SELECT a.account_id, -1000, 'refund', 'refund:RFB' || a.account_id, "
            "'alipay refund of FKB' || a.account_id || '-2 (decision)', NULL, d.at "
            "FROM b_acct a CROSS JOIN b_day d WHERE a.account_id % 100 = 0 AND d.d = 25")
        conn.exec_driver_sql(
            into + "SELECT a.account_id, 500, 'adjustment', 'adjustment:' || a.account_id || "
            "':bench', '调整 bench: 电表更换补偿', NULL, d.at FROM b_acct a CROSS JOIN b_day d "
            "WHERE a.account_id % 97 = 0 AND d.d = 26")
        for statement in restore:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(  # as the trigger would have kept them
            "UPDATE account_balance SET balance_fen = (SELECT COALESCE(SUM(amount_fen), 0) FROM "
            "ledger_entry e WHERE e.account_id = account_balance.account_id), entry_count = "
            "(SELECT COUNT(*) FROM ledger_entry e WHERE e.account_id = "
            "account_balance.account_id)")
        entries = conn.execute(sa.select(sa.func.count()).select_from(LedgerEntry).where(
            LedgerEntry.created_at >= start, LedgerEntry.created_at < end)).scalar()
    engine.dispose()
    engine = make_engine(url)
    checked = verify_balances(engine)
    assert not checked.mismatches, checked.mismatches[:3]
    engine.dispose()
    return month, time.perf_counter() - t0, entries


def export_bills(url: str, tmp: Path, estate_id: int, month: dt.date) -> tuple[float, int, int]:
    """The month's bills of every building, as the console's job makes them; returns the
    seconds from the job's start to its end, the households and the file's size."""
    from openpyxl import load_workbook

    from app.batch.models import BatchJob
    from app.batch.runner import Runner, enqueue
    from app.settings import Settings

    engine = make_engine(url)
    with transaction(engine) as s:
        job_id = enqueue(s, who=None, estate_id=estate_id, kind="export", params={
            "export": "bills", "format": "xlsx", "month": f"{month:%Y-%m}"}).id
    runner = Runner(engine, Settings(database_url=url, var_dir=tmp))
    t0 = time.perf_counter()
    assert runner.run_pending() == 1
    export_s = time.perf_counter() - t0
    with transaction(engine, read_only=True) as s:
        job = s.get(BatchJob, job_id)
        assert job.state == "done", job.message
        e = LedgerEntry.__table__
        window = (e.c.created_at >= day_start(month), e.c.created_at < day_start(next_month(month)))
        by_kind = dict(s.execute(sa.select(e.c.kind, sa.func.sum(e.c.amount_fen))
                                 .where(*window).group_by(e.c.kind)).all())
        closing = s.execute(sa.select(sa.func.sum(e.c.amount_fen)).where(
            e.c.created_at < day_start(next_month(month)))).scalar()
    path = Path(job.result_path)
    book = load_workbook(path, read_only=True)
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    header, body, totals = rows[0], rows[1:-1], rows[-1]
    col = {name: i for i, name in enumerate(header)}

    def fen_of(value) -> int:
        return int(Decimal(repr(value)) * 100)
    assert len(body) == ACCOUNT_COUNT and totals[0] == "合计"
    for name, kind, sign in (("电费", CHARGE, -1), ("公摊", SHARE, -1), ("缴费", TOPUP, 1),
                             ("退款", REFUND, -1), ("调账", ADJUSTMENT, 1)):
        assert fen_of(totals[col[name]]) == sign * by_kind.get(kind, 0), name
    assert fen_of(totals[col["期末余额"]]) == closing
    assert fen_of(totals[col["peak 电费"]]) + fen_of(totals[col["valley 电费"]]) < \
        fen_of(totals[col["电费"]])  # the flat-priced half has no periods
    size = path.stat().st_size
    engine.dispose()
    return export_s, len(body), size


# --- the console chart's top-ups --------------------------------------------------------------


def query_plan(conn, statement) -> list[str]:
    """How the database runs `statement`: SQLite's EXPLAIN QUERY PLAN lines, or PostgreSQL's
    EXPLAIN."""
    sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    if conn.dialect.name == "sqlite":
        return [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    return [row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql)]


def paid_orders_of_top_ups(engine) -> int:
    """The paid orders the month's top-ups are the credits of (a `topup` entry's key is
    "order:<out_trade_no>"), as the notifications left them: paid as the entry was posted."""
    from app.orders.models import PAID, Order

    e = LedgerEntry.__table__
    with engine.begin() as conn:
        return conn.execute(sa.insert(Order.__table__).from_select(
            ["out_trade_no", "account_id", "amount_fen", "channel", "status", "provider_trade_no",
             "created_at", "paid_at", "query_count"],
            sa.select(sa.func.substr(e.c.idempotency_key, 7), e.c.account_id, e.c.amount_fen,
                      sa.literal("alipay"), sa.literal(PAID), sa.literal(""), e.c.created_at,
                      e.c.created_at, sa.literal(0)).where(e.c.kind == TOPUP)),
            execution_options={"preserve_rowcount": True}).rowcount


def chart_top_ups(url: str, month: dt.date) -> tuple[int, float, float, list[str]]:
    """The console chart's top-ups of the month's first 30 days, every building: the paid
    orders added (not timed), then timed as the chart finds them (through the orders) and as
    it read them before (the days' ledger entries, by kind); the two must agree to the fen.
    Returns the orders, both times and the query's plan."""
    from app.console.charts import _accounts_of, top_ups_query
    from app.db import local_date

    engine = make_engine(url)
    orders = paid_orders_of_top_ups(engine)
    first, last = month, month + dt.timedelta(days=29)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")
        buildings = [b for (b,) in conn.execute(sa.text("SELECT id FROM building"))]
        accounts = _accounts_of(buildings)
        query = top_ups_query(accounts, first, last)
        t0 = time.perf_counter()
        found = dict(conn.execute(query).all())
        found_s = time.perf_counter() - t0
        day = local_date(LedgerEntry.created_at).label("day")
        t0 = time.perf_counter()
        scanned = dict(conn.execute(
            sa.select(day, sa.func.sum(LedgerEntry.amount_fen))
            .where(LedgerEntry.kind == TOPUP, LedgerEntry.account_id.in_(accounts),
                   LedgerEntry.created_at >= day_start(first),
                   LedgerEntry.created_at < day_start(last + dt.timedelta(days=1)))
            .group_by(day)).all())
        scan_s = time.perf_counter() - t0
        assert found == scanned and sum(found.values()) > 0, (found, scanned)
        plan = query_plan(conn, query)
    engine.dispose()
    return orders, found_s, scan_s, plan


if __name__ == "__main__":
    main()
