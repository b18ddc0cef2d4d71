"""/manage/charts: charts to look at rather than read, for the manager's buildings (or one of
them, `?building=`: a building outside the manager's scope is a 404):

- collection per local day, the last 30 days: top-ups (`topup` entries) against what was billed
  (`charge` and `share` entries), fen;
- the balance distribution: open households counted in balance buckets, the balance being the one
  everyone reads (`app.console.states.with_balance`, the SQL rendering of
  `app.ledger.services.funds`);
- consumption per building per month, the last 12 months: the households' meters'
  `DailyFrozen.used_wh`.

Each is a few grouped queries (no loop over households): billed from `ledger_day` for the frozen
days and from the ledger for the days after; top-ups from the ledger's `topup` entries of the 30
days, found through the paid orders (`top_ups_query`: it costs the orders paid in the days, not
the ledger's entries); the balances in one grouped query; the consumption grouped by building
and month. The SVG is drawn on the server (no script: it prints, and the CSP forbids inline
script), each with its table behind it in a <details>; figures stay integers (fen, Wh) until the
template formats them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import quote

import sqlalchemy as sa
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app.console import scope
from app.console.auth import COOKIE, who_is
from app.console.models import ROLE_ZH
from app.console.states import with_balance
from app.db import local_date, transaction, utcnow
from app.estate.models import Account, DailyFrozen, FrozenDay, Meter
from app.i18n import N_
from app.ledger.days import ONE_DAY, day_start
from app.ledger.models import CHARGE, SHARE, TOPUP, LedgerDay, LedgerEntry
from app.money import fen_to_yuan_str
from app.orders.models import PAID, Order
from app.tariffs import CHINA_TZ
from app.web.charts import Bar

PREFIX = "/manage"
DAYS, MONTHS = 30, 12
# The balance buckets, fen: (label, lower bound or None, upper bound or None), upper excluded.
BUCKETS = (("< 0", None, 0), ("0–10", 0, 1_000), ("10–50", 1_000, 5_000),
           ("50–100", 5_000, 10_000), ("100–300", 10_000, 30_000), ("≥ 300", 30_000, None))

# Drawn for a phone's width: a 360 px wide box, so that its 12 px text stays 12 px there.
WIDTH, HEIGHT, PAD_TOP, PAD_BOTTOM, PAD_SIDE = 360, 200, 34, 22, 6
COLORS = ("#1c64c4", "#c2410c", "#15803d", "#7e22ce", "#be123c", "#0e7490")  # one per series


@dataclass(frozen=True)
class Series:
    name: str
    color: str  # its bars' fill (an SVG attribute: no stylesheet needed, prints)
    bars: list[Bar]


@dataclass(frozen=True)
class Grouped:
    """Bars of one or more series per slot (a day, a bucket, a month), drawn side by side."""

    series: list[Series]
    width: int
    height: int
    max_value: str
    unit: str


def grouped_chart(labels: list[str], series: list[tuple[str, list[int]]], *,
                  unit: str,
                  fmt=lambda v: f"{v:,}") -> Grouped:
    """`series`: (name, one integer per label); bars scaled to the largest value of all."""
    n, k = max(len(labels), 1), max(len(series), 1)
    top = max((v for _, values in series for v in values), default=0)
    slot = (WIDTH - 2 * PAD_SIDE) / n
    plot = HEIGHT - PAD_TOP - PAD_BOTTOM
    every = -(-n // 6)  # at most about six labels: legible on a phone
    width = slot * 0.8 / k
    out = []
    for j, (name, values) in enumerate(series):
        bars = []
        for i, value in enumerate(values):
            h = plot * max(value, 0) / (top or 1)
            bars.append(Bar(x=round(PAD_SIDE + i * slot + slot * 0.1 + j * width, 1),
                            y=round(PAD_TOP + plot - h, 1), width=round(width, 1),
                            height=round(h, 1), value=fmt(value), label=labels[i],
                            show_label=j == 0 and (n - 1 - i) % every == 0))
        out.append(Series(name, COLORS[j % len(COLORS)], bars))
    return Grouped(out, WIDTH, HEIGHT, fmt(top), unit)


def _yuan(fen: int) -> str:
    """For a bar's tooltip and the axis: 元 with fen (integers only, no float near money)."""
    return fen_to_yuan_str(fen)


def _kwh(wh: int) -> str:
    tenths = (wh + 50) // 100  # kWh to one place, half up
    return f"{tenths // 10}.{tenths % 10}"


# --- the figures -----------------------------------------------------------------------------


def _accounts_of(building_ids: list[int]):
    return sa.select(Account.id).where(Account.building_id.in_(building_ids or [-1]))


# An order's top-up entry is posted in the transaction that moved the order to paid, after its
# `paid_at`: seconds later, a day at the very most.
POSTED_WITHIN = dt.timedelta(days=1)
_ORDER, _ENTRY = Order.__table__, LedgerEntry.__table__


def top_ups_query(accounts, first: dt.date, last: dt.date):
    """SQL: the `topup` entries of `accounts` summed by local day (their `created_at`), days
    [first, last]. Every such entry is a paid order's credit (`app.orders.services`,
    `_credit_many`: key "order:<out_trade_no>", posted after the order's `paid_at`), so the
    entries are found through the orders paid in the days (an index of `pay_order`: (status,
    paid_at), paid_at or account_id, as the planner picks), each by its unique key, instead of
    among all the ledger's entries of the days (about 24 an account and day, charges mostly):
    the ledger's own figures, day by day, at the cost of the orders.

    Each order's entry is looked up by a scalar subquery, once per order (a materialised CTE;
    SQLite ≥ 3.35): an index lookup whatever the planner estimates. Written as a join,
    PostgreSQL scanned the whole ledger instead in a database's first month. Measured on
    10,000 households' month of ledger (7.2 M entries, 20,000 top-ups): PostgreSQL 0.36 s (as
    a join 1.3 s, the ledger scan of before 1.1 s), with a year of orders 0.19 s (join 0.09 s,
    scan 0.6 s); SQLite 0.6 s (scan 3.4 s). `ledger_day` has no top-ups column, which would
    serve the frozen days: it holds what was billed and the balances."""
    start, end = day_start(first), day_start(last + ONE_DAY)
    credit = _ENTRY.alias("credit")
    its_entry = (credit.c.idempotency_key == sa.literal("order:") + _ORDER.c.out_trade_no) \
        & (credit.c.kind == TOPUP)
    credits = (sa.select(sa.select(credit.c.created_at).where(its_entry)
                         .scalar_subquery().label("posted"),
                         sa.select(credit.c.amount_fen).where(its_entry)
                         .scalar_subquery().label("fen"))
               .where(_ORDER.c.status == PAID, _ORDER.c.paid_at >= start - POSTED_WITHIN,
                      _ORDER.c.paid_at < end, _ORDER.c.account_id.in_(accounts))
               .cte("credits").prefix_with("MATERIALIZED"))
    day = local_date(credits.c.posted).label("day")
    return (sa.select(day, sa.func.sum(credits.c.fen))
            .where(credits.c.posted >= start, credits.c.posted < end).group_by(day))


def collection(session, building_ids: list[int], first: dt.date,
               last: dt.date) -> list[tuple[dt.date, int, int]]:
    """(day, top-ups fen, billed fen: charges and shares) for each local day of [first, last]."""
    frozen = session.execute(sa.select(sa.func.max(FrozenDay.day))).scalar()
    accounts = _accounts_of(building_ids)
    paid = {_as_date(d): int(fen or 0)
            for d, fen in session.execute(top_ups_query(accounts, first, last))}
    billed: dict[dt.date, int] = {}
    day = local_date(LedgerEntry.created_at).label("day")
    if frozen is not None and frozen >= first:
        for d, fen in session.execute(
                sa.select(LedgerDay.day, sa.func.sum(LedgerDay.charged_fen + LedgerDay.shared_fen))
                .where(LedgerDay.account_id.in_(accounts), LedgerDay.day >= first,
                       LedgerDay.day <= min(frozen, last))
                .group_by(LedgerDay.day)):
            billed[_as_date(d)] = int(fen or 0)
    since = first if frozen is None or frozen < first else frozen + ONE_DAY
    if since <= last:
        for d, fen in session.execute(
                sa.select(day, -sa.func.sum(LedgerEntry.amount_fen))
                .where(LedgerEntry.kind.in_((CHARGE, SHARE)),
                       LedgerEntry.account_id.in_(accounts),
                       LedgerEntry.created_at >= day_start(since),
                       LedgerEntry.created_at < day_start(last + ONE_DAY))
                .group_by(day)):
            billed[_as_date(d)] = int(fen or 0)
    out, d = [], first
    while d <= last:
        out.append((d, paid.get(d, 0), billed.get(d, 0)))
        d += ONE_DAY
    return out


def _as_date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def balance_buckets(session, who, building_ids: list[int]) -> list[tuple[str, int]]:
    """(bucket label in 元, open households whose balance falls in it), in BUCKETS' order."""
    query = scope.accounts_query(who).where(Account.closed_at.is_(None),
                                            Account.building_id.in_(building_ids or [-1]))
    query, balance = with_balance(query)
    bucket = sa.case(*[(balance < high, i) for i, (_, _, high) in enumerate(BUCKETS)
                       if high is not None], else_=len(BUCKETS) - 1).label("bucket")
    rows = query.with_only_columns(bucket).subquery()
    counted = dict(session.execute(sa.select(rows.c.bucket, sa.func.count())
                                   .group_by(rows.c.bucket)).all())
    return [(label, int(counted.get(i, 0))) for i, (label, _, _) in enumerate(BUCKETS)]


def consumption(session, building_ids: list[int], first: dt.date,
                last: dt.date) -> dict[tuple[int, int, int], int]:
    """Wh used by the households' meters, by (building id, year, month), days [first, last]."""
    year = sa.extract("year", DailyFrozen.day)
    month = sa.extract("month", DailyFrozen.day)
    return {(b, int(y), int(m)): int(wh or 0) for b, y, m, wh in session.execute(
        sa.select(Account.building_id, year, month, sa.func.sum(DailyFrozen.used_wh))
        .join(Meter, Meter.id == DailyFrozen.meter_id)
        .join(Account, Account.id == Meter.account_id)
        .where(Account.building_id.in_(building_ids or [-1]), DailyFrozen.day >= first,
               DailyFrozen.day <= last)
        .group_by(Account.building_id, year, month))}


def months_back(today: dt.date, n: int) -> list[dt.date]:
    """The first days of the last `n` months, the current one last."""
    out, first = [], today.replace(day=1)
    for _ in range(n):
        out.append(first)
        first = (first - ONE_DAY).replace(day=1)
    return out[::-1]


# --- the page --------------------------------------------------------------------------------


def _who(request: Request):
    idle = dt.timedelta(minutes=request.app.state.settings.console_idle_minutes)
    return who_is(request.app.state.engine, request.cookies.get(COOKIE), idle)


async def charts_page(request: Request) -> Response:
    who = _who(request)
    if who is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)
    building_id = request.query_params.get("building", "")
    today = utcnow().astimezone(CHINA_TZ).date()
    first_day = today - dt.timedelta(days=DAYS - 1)
    months = months_back(today, MONTHS)
    with transaction(request.app.state.engine, read_only=True) as s:
        buildings = scope.buildings(s, who)
        ids = [b.id for b in buildings]
        if building_id:
            if not building_id.isdigit() or int(building_id) not in ids:
                raise HTTPException(404, "没有找到")
            ids = [int(building_id)]
        days = collection(s, ids, first_day, today)
        buckets = balance_buckets(s, who, ids)
        used = consumption(s, ids, months[0], today)
    shown = [b for b in buildings if b.id in ids]
    per_building = [(b, [used.get((b.id, m.year, m.month), 0) for m in months]) for b in shown]
    return request.app.state.templates.TemplateResponse(request, "console/charts.html", {
        "csrftoken": request.scope["csrftoken"](), "prefix": PREFIX, "role_zh": ROLE_ZH,
        "who": who, "building": building_id, "buildings": {b.id: b.name for b in buildings},
        "days": days, "buckets": buckets, "months": months, "per_building": per_building,
        "collection_chart": grouped_chart(
            [f"{d:%m-%d}" for d, _, _ in days],
            [(N_("充值"), [p for _, p, _ in days]),
             (N_("电费与公摊"), [c for _, _, c in days])],
            unit=N_("元"), fmt=_yuan),
        "buckets_chart": grouped_chart([label for label, _ in buckets],
                                       [(N_("户数"), [n for _, n in buckets])], unit=N_("户")),
        "usage_charts": [(b, grouped_chart([f"{m:%y-%m}" for m in months], [(b.name, values)],
                                           unit="kWh", fmt=_kwh))
                         for b, values in per_building],  # one a building: legible on a phone
    })


def routes() -> list[Route]:
    return [Route("/charts", charts_page, name="console_charts")]
