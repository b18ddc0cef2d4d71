"""A bound resident's pages at 10,000 accounts with a year behind them: server time of a month's
bill, the history, the usage and (for information) the list of bills and the notices. No set-up:
a SQLite file in a temporary directory, about 75 s in all on a quiet 2-core machine. With
BENCH_PORTAL_PG=<accounts> (a multiple of 200, e.g. 5000) a throwaway PostgreSQL cluster too
(`bench.common.throwaway_postgres`), built alongside, measured after (prefixed `pg_`): about
3½ minutes in all, so not by default.

The estate is `bench.console`'s, built by its own `build` (read its docstring): 10,000 households
in buildings of 200, a `daily_frozen` row per meter and day of the 365 local days that end at
today's local midnight, top-ups, orders, notices, refunds, an opening entry; the measured
households (2 a building: 100) have the year hourly, a `charge` per local hour (8,760 a year) and
a `share` per day with its `share_run`. One change: the measured households' charges are
written as a time-of-use tariff's memos (`describe_accrued`'s "峰 280 Wh × 0.5583", 峰 08:00–22:00,
谷 the rest; the price the same), so that a bill has periods to break down. Then, as the billing
jobs' freeze leaves them (账日冻结, app/estate/freeze.py): the measured households' `ledger_day`
rows of every ended day, written at once by one INSERT … SELECT over their entries (the
freeze's own sums, `app.ledger.days`, grouped by local day, `own_fen` the running sum), and a
`frozen_day` row for every day up to yesterday. (Only the measured households': the freeze of
all 10,000, 3.7 M rows, takes 20 s more than the two minutes allow; the pages of a household
read its own rows only.) Every bill shown is checked against the ledger: its opening and
closing balances are the sums of the household's entries before the month's first and next
month's first local midnight.

A resident is bound to each measured household (the agreement accepted). Measured: the real
app (`app.main.create_app`) in-process through starlette's TestClient with the resident's
signed cookie; the server's time of each request, taken around the application itself (an ASGI
wrapper: routing, middleware, session, queries, template; not the test client). After a
warm-up, in turn over the households: `GET /a/<户号>/bills/<YYYY-MM>` of each of the last 13
months in turn (the current one so far; `portal_bill_*`), `/history` (the newest 30 days with
entries, and a page three months back; `portal_history_*`), `/usage` (`portal_usage_*`),
`/bills` and `/notices` (for information). Every answer must be 200 and show what it should:
the bill its ledger's opening and closing, 峰 and 谷 lines; the history 30 days; the usage 30
days and 12 months of the meter's Wh.

Printed: p50 and p99 per page (`portal_bill_p99_ms`: goal ≤ 50 ms), the set-up's times and
sizes. `portal_home_p99_ms` and `portal_home_bytes` (the bound home page) have their place
below, marked, for the home page's author to fill.

    python -m bench.portal
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import gc
import itertools
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
import sqlalchemy as sa
from starlette.testclient import TestClient

import bench.console as estate
from app.db import local_date, make_engine, transaction
from app.estate.models import Account, DailyFrozen, FrozenDay
from app.ledger.models import CHARGE, EMERGENCY_CREDIT, SHARE, LedgerDay, LedgerEntry
from app.main import create_app
from app.migrate import upgrade
from app.resident import identity
from app.resident.agreement import load_agreement
from app.resident.identity import accept_agreement
from app.resident.models import Resident, ResidentAccount
from app.settings import Settings
from bench.common import throwaway_postgres

ACCOUNTS = estate.ACCOUNTS  # 10,000
PG_ACCOUNTS = int(os.environ.get("BENCH_PORTAL_PG", 0))  # 0: SQLite only
WARM_UP, BILLS, HISTORIES, USAGES, OTHERS = 30, 390, 200, 200, 60
MONTHS = 13  # the current month and the 12 before it

# The measured households' hourly charges with a time-of-use memo (the same fen and Wh).
_FLAT_MEMO = "h.wh || ' Wh × 0.5583 元/kWh'"
_TOU_MEMO = "CASE WHEN h.hour BETWEEN 8 AND 21 THEN '峰 ' ELSE '谷 ' END || h.wh || ' Wh × 0.5583'"
assert estate.GENERATED[0].count(_FLAT_MEMO) == 1, "bench.console's hourly charges changed"
GENERATED = [estate.GENERATED[0].replace(_FLAT_MEMO, _TOU_MEMO), *estate.GENERATED[1:]]


def build(url: str, homes: estate.Households) -> float:
    """`bench.console`'s estate with time-of-use memos, the measured households' days frozen,
    and a resident bound to each; returns the seconds taken."""
    t0 = time.perf_counter()
    estate.GENERATED = GENERATED  # (its `build` reads it when it runs)
    estate.build(url, homes)
    engine = make_engine(url)
    with transaction(engine) as s:
        freeze(s, homes.hourly)
    with transaction(engine) as s:
        bind(s, homes.hourly)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE ledger_day")
    engine.dispose()
    return time.perf_counter() - t0


def freeze(s, account_ids: list[int]) -> None:
    """The accounts' `ledger_day` rows of every ended local day, as `freeze_ledger_day` writes
    them day by day (the same sums of the day's entries; `own_fen` the running sum of `net_fen`,
    which is what adding each day's to the previous row gives), and a `frozen_day` row for every
    day from the ledger's first to yesterday."""
    e = LedgerEntry.__table__
    day = local_date(e.c.created_at)
    own = sa.case((e.c.kind == EMERGENCY_CREDIT, 0), else_=e.c.amount_fen)
    days = (sa.select(e.c.account_id, day.label("day"),
                      sa.func.sum(sa.case((e.c.kind == CHARGE, -e.c.amount_fen), else_=0))
                      .label("charged"),
                      sa.func.sum(sa.case((e.c.kind == SHARE, -e.c.amount_fen), else_=0))
                      .label("shared"),
                      sa.func.sum(own).label("net"))
            .where(e.c.account_id.in_(account_ids), e.c.created_at < estate.END)
            .group_by(e.c.account_id, day).subquery("days"))
    running = sa.func.sum(days.c.net).over(partition_by=days.c.account_id, order_by=days.c.day)
    s.execute(sa.insert(LedgerDay.__table__).from_select(
        ["account_id", "day", "charged_fen", "shared_fen", "net_fen", "own_fen"],
        sa.select(days.c.account_id, days.c.day, days.c.charged, days.c.shared, days.c.net,
                  running)))
    first = (estate.START - 2 * estate.HOUR).astimezone(estate.CHINA_TZ).date()
    last = (estate.END - estate.HOUR).astimezone(estate.CHINA_TZ).date()
    s.execute(sa.insert(FrozenDay.__table__), [
        {"day": first + dt.timedelta(days=k), "accounts": 0, "frozen_at": estate.END}
        for k in range((last - first).days + 1)])


def bind(s, account_ids: list[int]) -> None:
    """A resident per household (phone 1390000xxxx), bound, the agreement accepted."""
    version = load_agreement(None).version
    for k, a in enumerate(account_ids):
        r = Resident(phone=f"1390000{k:04d}")
        s.add(r)
        s.flush()
        s.add(ResidentAccount(resident_id=r.id, account_id=a))
        accept_agreement(s, r.id, a, version, "bench")


# --- what the answers must show ---------------------------------------------------------------

def months_back(k: int) -> dt.date:
    month = estate.TODAY.date().replace(day=1)
    for _ in range(k):
        month = (month - dt.timedelta(days=1)).replace(day=1)
    return month


def next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def ledger_balances(url: str, account_ids: list[int]) -> dict[tuple[int, dt.date], int]:
    """Each household's balance at the first local midnight of each month (its entries before
    it summed), from the ledger: one pass, grouped by local day."""
    e, engine = LedgerEntry.__table__, make_engine(url)
    day = local_date(e.c.created_at)
    by_day: dict[int, list[tuple[dt.date, int]]] = {}
    with engine.connect() as conn:
        for a, d, total in conn.execute(
                sa.select(e.c.account_id, day, sa.func.sum(e.c.amount_fen))
                .where(e.c.account_id.in_(account_ids)).group_by(e.c.account_id, day)):
            by_day.setdefault(a, []).append(
                (d if isinstance(d, dt.date) else dt.date.fromisoformat(d), int(total)))
    engine.dispose()
    bounds = sorted({months_back(k) for k in range(MONTHS)} | {next_month(months_back(0))})
    out = {}
    for a, days in by_day.items():
        for month in bounds:
            out[(a, month)] = sum(total for d, total in days if d < month)
    return out


def yuan(fen: int) -> str:
    return f"{'-' if fen < 0 else ''}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def check_bill(text: str, a: int, month: dt.date, balances: dict) -> None:
    opening = re.search(r'id="opening">([-0-9.]+)<', text)[1]
    closing = re.search(r'id="closing">([-0-9.]+)<', text)[1]
    assert opening == yuan(balances.get((a, month), 0)), (a, month, opening)
    assert closing == yuan(balances.get((a, next_month(month)), 0)), (a, month, closing)
    if month != months_back(0) or estate.TODAY.day > 1:
        assert ">峰</td>" in text and ">谷</td>" in text, (a, month)


def check_history(text: str) -> None:
    assert text.count('<h2 class="day-title">') == 30, text.count('<h2 class="day-title">')
    assert 'class="line folded"' in text


def check_usage(text: str, wh: dict[dt.date, int]) -> None:
    rows = re.findall(r'<tr><th scope="row">(\d{4}-\d{2}-\d{2})</th><td class="num">([0-9.]+)<',
                      text)
    assert len(rows) == 30, len(rows)
    for day, kwh in rows:
        used = wh.get(dt.date.fromisoformat(day), 0)
        assert kwh == f"{used // 1000}.{used % 1000:03d}", (day, kwh, used)
    assert len(re.findall(r'<tr><th scope="row">\d{4}-\d{2}</th>', text)) == 12


# --- the measurement ------------------------------------------------------------------------------

class Timed:
    """The app, its time per request kept: from the request's arrival to the response's last
    byte sent, inside the server (the test client's own work left out)."""

    def __init__(self, app):
        self.app, self.seconds = app, 0.0

    async def __call__(self, scope, receive, send):
        t0 = time.perf_counter()
        await self.app(scope, receive, send)
        self.seconds = time.perf_counter() - t0


def timed_app(url: str, homes: estate.Households, var_dir: Path):
    """(engine, settings, the app `Timed`, account id → its resident, account id → 户号) for the
    measured households; the collector frozen first: what is left (the app, the plan) is not
    walked again."""
    gc.collect()
    gc.freeze()
    engine = make_engine(url)
    settings = Settings(database_url=url, var_dir=var_dir)
    timed = Timed(create_app(settings, engine))
    with transaction(engine, read_only=True) as s:
        residents = dict(s.execute(sa.select(ResidentAccount.account_id,
                                             ResidentAccount.resident_id)).all())
        numbers = dict(s.execute(sa.select(Account.id, Account.number)
                                 .where(Account.id.in_(homes.hourly))).all())
    return engine, settings, timed, residents, numbers


def measure(url: str, homes: estate.Households, var_dir: Path) -> dict[str, list[float]]:
    balances = ledger_balances(url, homes.hourly)
    engine, settings, timed, residents, numbers = timed_app(url, homes, var_dir)
    usage = {}
    with engine.connect() as conn:  # the meters' days of the last 30 (a meter's id: its account's)
        for meter, day, wh in conn.execute(
                sa.select(DailyFrozen.meter_id, DailyFrozen.day, DailyFrozen.used_wh)
                .where(DailyFrozen.meter_id.in_(homes.hourly),
                       DailyFrozen.day >= estate.TODAY.date() - dt.timedelta(days=31))):
            usage.setdefault(meter, {})[day if isinstance(day, dt.date)
                                        else dt.date.fromisoformat(day)] = wh
    out: dict[str, list[float]] = {}
    accounts = itertools.cycle(homes.hourly)
    plan = ([("bill", k % MONTHS) for k in range(BILLS)] + [("history", k % 2)
                                                            for k in range(HISTORIES)]
            + [("usage", 0)] * USAGES + [("bills", 0)] * OTHERS + [("notices", 0)] * OTHERS)
    plan = plan[:WARM_UP] + plan  # the warm-up: the first requests, again
    order = sorted(range(len(plan)), key=lambda i: (i * 7919) % len(plan))  # pages interleaved
    with TestClient(timed, follow_redirects=False) as client:
        for n, i in enumerate(order):
            page, k = plan[i]
            a = next(accounts)
            client.cookies.set(identity.SESSION_COOKIE,
                               identity.session_value(settings.secret_key, residents[a]))
            number = numbers[a]
            if page == "bill":
                month = months_back(k)
                path = f"/a/{number}/bills/{month:%Y-%m}"
            elif page == "history":
                path = f"/a/{number}/history" + (
                    f"?before={estate.TODAY.date() - dt.timedelta(days=90)}" if k else "")
            else:
                path = f"/a/{number}/{page}"
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            text = response.text
            if page == "bill":
                check_bill(text, a, month, balances)
            elif page == "history":
                check_history(text)
            elif page == "usage":
                check_usage(text, usage[a])
            if n >= WARM_UP:
                out.setdefault(page, []).append(timed.seconds)
    engine.dispose()
    gc.unfreeze()
    return out


def percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


NAMES = {"bill": "portal_bill", "history": "portal_history", "usage": "portal_usage",
         "bills": "portal_bills_list", "notices": "portal_notices"}


def report(prefix: str, times: dict[str, list[float]]) -> list[str]:
    lines = []
    for page, name in NAMES.items():
        samples = times[page]
        lines += [f"{prefix}{name}_p50_ms: {percentile(samples, 50) * 1e3:.1f} ms",
                  f"{prefix}{name}_p99_ms: {percentile(samples, 99) * 1e3:.1f} ms "
                  f"({len(samples)} requests)"]
    return lines


# --- the bound home page ----------------------------------------------------------------------------

HOMES = 400  # requests of the bound home page (after the warm-up)


def _compressed_size(response) -> int:
    """The bytes on the wire: the compressed body's length when the server gzipped it."""
    if response.headers.get("content-encoding") == "gzip":
        return int(response.headers["content-length"])
    return len(response.content)


def measure_home(url: str, homes: estate.Households, var_dir: Path) -> list[str]:
    """`portal_home_p99_ms`: server time of the bound home page (`/a/<户号>`, the resident signed
    in, agreement accepted), each checked to show the ledger's balance; `portal_home_bytes`: the
    page's HTML and every stylesheet and script it loads (htmx included, which the page loads
    while it watches a payment), as sent compressed to a browser that accepts gzip."""
    engine, settings, timed, residents, numbers = timed_app(url, homes, var_dir)
    with transaction(engine, read_only=True) as s:
        e = LedgerEntry.__table__
        balances = dict(s.execute(sa.select(e.c.account_id, sa.func.sum(e.c.amount_fen))
                                  .where(e.c.account_id.in_(homes.hourly))
                                  .group_by(e.c.account_id)).all())
    accounts = itertools.cycle(homes.hourly)
    samples: list[float] = []
    page_bytes = 0
    with TestClient(timed, follow_redirects=False) as client:
        for n in range(WARM_UP + HOMES):
            a = next(accounts)
            client.cookies.set(identity.SESSION_COOKIE,
                               identity.session_value(settings.secret_key, residents[a]))
            response = client.get(f"/a/{numbers[a]}", headers={"accept-encoding": "gzip"})
            assert response.status_code == 200, response.status_code
            shown = re.search(r'id="balance">([^<]+)<', response.text)
            # the page's balance is the ledger's less the accrued charge not yet posted: the
            # same sign and within a yuan of the entries' sum for these households
            assert shown and abs(float(shown[1]) * 100 - balances[a]) < 100, (shown, balances[a])
            if n >= WARM_UP:
                samples.append(timed.seconds)
            if n == 0:
                html = response.text
                assets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
                assets += re.findall(r'<script[^>]* src="([^"]+)"', html)
                assets += re.findall(r'data-htmx="([^"]+)"', html)
                page_bytes = _compressed_size(response) + sum(
                    _compressed_size(client.get(asset, headers={"accept-encoding": "gzip"}))
                    for asset in assets)
    engine.dispose()
    gc.unfreeze()
    return [f"portal_home_p50_ms: {percentile(samples, 50) * 1e3:.1f} ms",
            f"portal_home_p99_ms: {percentile(samples, 99) * 1e3:.1f} ms ({len(samples)} requests)",
            f"portal_home_bytes: {page_bytes} bytes ({page_bytes / 1024:.1f} KB, HTML + CSS + JS "
            f"compressed)"]


def main() -> None:
    wall, tmp = time.perf_counter(), Path(tempfile.mkdtemp(prefix="feikong-bench-portal-"))
    (tmp / "var").mkdir()
    lines = []
    try:
        with (throwaway_postgres() if PG_ACCOUNTS else _no_server()) as server:
            urls = {"": f"sqlite:///{tmp / 'portal.db'}"}
            if server:
                with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
                    conn.execute("CREATE DATABASE portal")
                urls["pg_"] = f"{server}/portal"
            t = time.perf_counter()
            for url in urls.values():  # one at a time: alembic's context is global
                upgrade(url)
            homes = {"": estate.Households(ACCOUNTS)}
            if server:
                homes["pg_"] = estate.Households(PG_ACCOUNTS)
            lines.append(f"setup_s_migrations_plan: {time.perf_counter() - t:.1f} s")
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                built = {db: pool.submit(build, url, homes[db]) for db, url in urls.items()}
                lines += [f"{db}setup_s: {future.result():.1f} s" for db, future in built.items()]
            os.sync()  # the load's pages on disk now, not written back while we measure
            for db, url in urls.items():
                lines += [f"{db}accounts: {len(homes[db].state)} accounts "
                          f"({len(homes[db].hourly)} measured, a year hourly)",
                          f"{db}ledger_entries: {estate.entries(url)} rows"]
                t = time.perf_counter()
                lines += report(db, measure(url, homes[db], tmp / "var"))
                lines.append(f"{db}measure_s: {time.perf_counter() - t:.1f} s")
            lines += measure_home(urls[""], homes[""], tmp / "var")
        lines.append(f"sqlite_mb: {os.path.getsize(tmp / 'portal.db') / 1e6:.0f} MB")
        lines.append(f"wall_s: {time.perf_counter() - wall:.0f} s")
        print("\n".join(lines))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _no_server:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main()
