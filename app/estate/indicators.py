"""The field's indicators (运营指标) of a set of buildings, per local (China time) day or month:
reading success (采集成功率), fee-control success (费控执行成功率), collection (电费回收率),
cuts (停电次数) and the time from payment to power (缴费→复电). Each `Indicators` carries the
numerators and denominators (a page shows "812/820"), not only the ratios.

Computed in the database: grouped counts and sums over the whole range of days, no loop over
accounts or meters in Python. The days frozen already (app/estate/freeze.py: every ended day,
shortly after midnight) are read from `building_day`, a row per building and day; the others
(today; any day not frozen yet) are computed from the meters' days and the ledger the same way
the freeze computes them. Commands and payments are read where they are (indexed by time).
docs/console.md ("指标的计算") says the same for people. The figures, for the meters of the
buildings (a household's meter through its account's building; a common-area or main meter
through its own `building_id`):

- 采集成功率: meters read ÷ meters that should have been. A meter should have been read on a day
  when it has no account, or its account was open at some time that day (created before the
  day ended, not closed before it began); it was read when it has that day's `DailyFrozen`
  row (the worker writes one for every day a meter answers, its register moved or not) taken
  while its account was open. For a month, the days are added up (meter-days: `meters` is the
  sum of each day's meters), so the month's rate is its days' rate weighted by their meters.
- 费控执行成功率: the cut and restore commands (not on-demand reads) issued in the period (by
  `created_at`): confirmed by the relay read back (`done`) ÷ (confirmed + expired). A command
  still pending now is not judged yet: it is counted apart (`commands_pending`) and joins
  the rate when it is confirmed or expires (within its expiry, hours), in the period it was
  issued in; a cancelled one (a cut withdrawn because the money came) was never carried out and
  is counted apart too.
- 停电次数: cut commands confirmed in the period (by `completed_at`).
- 电费回收率: 应收 (receivable) = the arrears at the period's start + what was billed in it
  (charges and shares); 实收 (collected) = receivable − the arrears at its end; the rate is
  collected ÷ receivable. The arrears at an instant are the sum, over the accounts, of what each
  owes: its own balance (the ledger's sum less the emergency advance outstanding) where below
  zero. Top-ups cover charges first from the balance, so a period whose charges were all covered
  collects 100 %; arrears that grow are not collected; arrears paid off are collected late.
- 缴费→复电: for each order paid in the period (`paid_at`) whose account had a meter to restore
  (a restore command pending when it was paid, or queued by the payment: created within
  `PAYMENT_RESTORE_WINDOW_S` after), the seconds from `paid_at` to the `completed_at` of that
  restore (the last one, when several meters); median and 95th percentile (linear between
  ranks, as PostgreSQL's percentile_cont) over the payments whose restores are all confirmed;
  the others are counted apart (`restores_unconfirmed`).

Periods end today at the latest: a day after today is not returned, the current month runs to
today.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Sequence

import sqlalchemy as sa
from sqlmodel import Session

from app.commands.models import CANCELLED, CUT, DONE, EXPIRED, PENDING, RESTORE, Command
from app.db import local_date, seconds_between, utcnow
from app.estate.models import Account, BuildingDay, DailyFrozen, FrozenDay, Meter
from app.ledger.days import ONE_DAY, DayMoney, day_start, local_day, money_from_ledger
from app.orders.models import Order

PAYMENT_RESTORE_WINDOW_S = 60  # a restore created this soon after a payment was queued by it

_METER, _ACCOUNT, _DAY = Meter.__table__, Account.__table__, DailyFrozen.__table__
_COMMAND, _ORDER = Command.__table__, Order.__table__
_BDAY, _FROZEN = BuildingDay.__table__, FrozenDay.__table__


def percent(numerator: int, denominator: int) -> Decimal | None:
    """numerator ÷ denominator in %, two places (half up); None when the denominator is 0."""
    if not denominator:
        return None
    return (Decimal(numerator) * 100 / Decimal(denominator)).quantize(Decimal("0.01"),
                                                                     ROUND_HALF_UP)


@dataclass(frozen=True)
class Indicators:
    """A set of buildings' figures for one period: the local days [first_day, last_day]."""

    first_day: dt.date
    last_day: dt.date
    # 采集成功率 (for a month: meter-days, each day's meters added up)
    meters: int  # should have been read
    meters_read: int  # of them, read
    # 费控执行成功率: cut and restore commands issued in the period
    commands_confirmed: int
    commands_expired: int
    commands_pending: int  # not judged yet: outside the rate
    commands_cancelled: int  # never carried out: outside the rate
    # 停电次数
    cuts: int  # cut commands confirmed in the period
    # 电费回收率, fen
    charged_fen: int  # `charge` entries posted in the period
    shared_fen: int  # `share` entries (公摊) posted in the period
    arrears_start_fen: int  # owed at the period's start (own balances below zero)
    arrears_end_fen: int  # owed at its end
    # 缴费→复电
    restores_after_payment: int  # payments in the period that had a meter to restore
    restores_unconfirmed: int  # of them, a restore not (yet) confirmed
    payment_to_power_median_s: float | None  # over the confirmed ones
    payment_to_power_p95_s: float | None

    @property
    def reading_rate_pct(self) -> Decimal | None:
        return percent(self.meters_read, self.meters)

    @property
    def commands_judged(self) -> int:
        return self.commands_confirmed + self.commands_expired

    @property
    def fee_control_rate_pct(self) -> Decimal | None:
        return percent(self.commands_confirmed, self.commands_judged)

    @property
    def billed_fen(self) -> int:
        return self.charged_fen + self.shared_fen

    @property
    def receivable_fen(self) -> int:  # 应收
        return self.arrears_start_fen + self.billed_fen

    @property
    def collected_fen(self) -> int:  # 实收
        return self.receivable_fen - self.arrears_end_fen

    @property
    def collection_rate_pct(self) -> Decimal | None:
        return percent(self.collected_fen, self.receivable_fen)

    @property
    def restores_confirmed(self) -> int:
        return self.restores_after_payment - self.restores_unconfirmed


def daily(session: Session, building_ids: Sequence[int], first_day: dt.date,
          last_day: dt.date, *, today: dt.date | None = None) -> list[Indicators]:
    """`Indicators` of each local day of [first_day, last_day] (up to today) for the buildings."""
    today = today or local_day(utcnow())
    last_day = min(last_day, today)
    days = []
    day = first_day
    while day <= last_day:
        days.append((day, day))
        day += ONE_DAY
    return _indicators(session, list(building_ids), days)


def monthly(session: Session, building_ids: Sequence[int], first_month: dt.date,
            last_month: dt.date, *, today: dt.date | None = None) -> list[Indicators]:
    """`Indicators` of each local calendar month from `first_month` to `last_month` (any day
    of each; up to today's month, which runs to today) for the buildings."""
    today = today or local_day(utcnow())
    months = []
    start = first_month.replace(day=1)
    while start <= min(last_month, today):
        end = (start + dt.timedelta(days=32)).replace(day=1) - ONE_DAY
        months.append((start, min(end, today)))
        start = end + ONE_DAY
    return _indicators(session, list(building_ids), months)


def _indicators(session: Session, building_ids: list[int],
                periods: list[tuple[dt.date, dt.date]]) -> list[Indicators]:
    if not periods:
        return []
    first, last = periods[0][0], periods[-1][1]
    start, end = day_start(first), day_start(last + ONE_DAY)
    meters = meters_of(building_ids)
    figures = _figures_by_day(session, building_ids, first, last)
    commands = _commands_by_day(session, meters, start, end)
    cuts = _cuts_by_day(session, meters, start, end)
    waits = _payment_waits(session, building_ids, start, end)
    out = []
    for a, b in periods:
        days = [a + dt.timedelta(days=k) for k in range((b - a).days + 1)]
        states = defaultdict(int)
        for day in days:
            for state, n in commands.get(day, {}).items():
                states[state] += n
        seconds = sorted(s for day in days for s in waits.get(day, []) if s is not None)
        unconfirmed = sum(1 for day in days for s in waits.get(day, []) if s is None)
        out.append(Indicators(
            first_day=a, last_day=b,
            meters=sum(figures[day].meters for day in days),
            meters_read=sum(figures[day].meters_read for day in days),
            commands_confirmed=states[DONE], commands_expired=states[EXPIRED],
            commands_pending=states[PENDING], commands_cancelled=states[CANCELLED],
            cuts=sum(cuts.get(day, 0) for day in days),
            charged_fen=sum(figures[day].charged_fen for day in days),
            shared_fen=sum(figures[day].shared_fen for day in days),
            arrears_start_fen=figures[a].arrears_start_fen,
            arrears_end_fen=figures[b].arrears_end_fen,
            restores_after_payment=len(seconds) + unconfirmed, restores_unconfirmed=unconfirmed,
            payment_to_power_median_s=quantile(seconds, 0.5),
            payment_to_power_p95_s=quantile(seconds, 0.95)))
    return out


@dataclass(frozen=True)
class DayFigures:
    """What a `BuildingDay` row holds, for a set of buildings: their rows added up."""

    day: dt.date
    meters: int
    meters_read: int
    charged_fen: int
    shared_fen: int
    arrears_start_fen: int
    arrears_end_fen: int


def frozen_span(session: Session) -> tuple[dt.date, dt.date] | None:
    """(first, last) day frozen, every day between them frozen too; None when none is."""
    first, last = session.execute(sa.select(sa.func.min(_FROZEN.c.day),
                                            sa.func.max(_FROZEN.c.day))).one()
    return None if first is None else (_as_date(first), _as_date(last))


def frozen_through(session: Session) -> dt.date | None:
    """The last day frozen (every day from the first frozen one to it is), or None."""
    span = frozen_span(session)
    return None if span is None else span[1]


def figures_by_day(session: Session, building_ids: Sequence[int], first: dt.date,
                   last: dt.date) -> list[DayFigures]:
    """The buildings' `DayFigures` of each day of [first, last]: frozen days from their
    `building_day` rows (one grouped query), the others computed as the freeze computes them."""
    figures = _figures_by_day(session, list(building_ids), first, last)
    return [figures[day] for day in sorted(figures)]


def _figures_by_day(session: Session, building_ids: list[int], first: dt.date,
                    last: dt.date) -> dict[dt.date, DayFigures]:
    span = frozen_span(session)
    out: dict[dt.date, DayFigures] = {}
    if span is not None and first <= span[1] and last >= span[0]:
        a, b = max(first, span[0]), min(last, span[1])
        for row in session.execute(
                sa.select(_BDAY.c.day, *(sa.func.sum(_BDAY.c[c]) for c in _BDAY_SUMS))
                .where(_BDAY.c.building_id.in_(building_ids), _BDAY.c.day >= a,
                       _BDAY.c.day <= b)
                .group_by(_BDAY.c.day)):
            day = _as_date(row[0])
            out[day] = DayFigures(day, *(int(x) for x in row[1:]))
        for k in range((b - a).days + 1):
            day = a + dt.timedelta(days=k)
            out.setdefault(day, DayFigures(day, 0, 0, 0, 0, 0, 0))
    if span is None:
        live = [(first, last)]
    else:
        live = [(first, min(last, span[0] - ONE_DAY)), (max(first, span[1] + ONE_DAY), last)]
    for a, b in live:
        if a > b:
            continue
        due = meters_due_by_day(session, building_ids, a, b)
        read = _meters_read_by_day(session, building_ids, a, b)
        if span is not None and b < span[0]:  # before the ledger's first entry: no money
            money = {day: DayMoney(day, 0, 0, 0, 0) for day in due}
        else:
            start = None  # the arrears at `a`'s start: the last frozen day's end, when it is
            if span is not None and a - ONE_DAY == span[1]:
                start = int(session.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(_BDAY.c.arrears_end_fen), 0))
                    .where(_BDAY.c.building_id.in_(building_ids),
                           _BDAY.c.day == span[1])).scalar())
            money = {m.day: m for m in money_from_ledger(
                session, building_ids, a, b, span[1] if span else None, arrears_start=start)}
        for day, n in due.items():
            m = money[day]
            out[day] = DayFigures(day, n, read.get(day, 0), m.charged_fen, m.shared_fen,
                                  m.arrears_start_fen, m.arrears_end_fen)
    return out


_BDAY_SUMS = ("meters", "meters_read", "charged_fen", "shared_fen", "arrears_start_fen",
              "arrears_end_fen")


def quantile(sorted_values: list[float], q: float) -> float | None:
    """The q-quantile of sorted values, linear between the closest ranks (PostgreSQL's
    percentile_cont); None for no values."""
    if not sorted_values:
        return None
    position = q * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


# --- 采集成功率 --------------------------------------------------------------------------------

def of_buildings(building_ids: list[int], *, main_meters: bool = True):
    """WHERE: a meter (joined with its account, outer: `METERS_ACCOUNTS`) belongs to one of the
    buildings (`main_meters=False`: and is not a building's main meter)."""
    clause = sa.or_(_ACCOUNT.c.building_id.in_(building_ids),
                    sa.and_(_METER.c.account_id.is_(None),
                            _METER.c.building_id.in_(building_ids)))
    return clause if main_meters else sa.and_(clause, _METER.c.building_main.is_(False))


METERS_ACCOUNTS = _METER.outerjoin(_ACCOUNT, _ACCOUNT.c.id == _METER.c.account_id)


def meters_of(building_ids: list[int]):
    """SELECT the ids of the buildings' meters (households', common-area, main), through the
    indexes (accounts by building, meters by account; meters by building): for `IN`, so that
    a query of a few buildings' days or commands seeks their meters' rows instead of reading
    every meter's and keeping the buildings' (what `of_buildings`, an OR, would make it do)."""
    return sa.union_all(
        sa.select(_METER.c.id).join(_ACCOUNT, _ACCOUNT.c.id == _METER.c.account_id)
        .where(_ACCOUNT.c.building_id.in_(building_ids)),
        sa.select(_METER.c.id).where(_METER.c.account_id.is_(None),
                                     _METER.c.building_id.in_(building_ids)))


def open_in(first: dt.date, last: dt.date):
    """WHERE: the meter has no account, or its account was open some time in [first, last]."""
    return sa.or_(_METER.c.account_id.is_(None),
                  sa.and_(_ACCOUNT.c.created_at < day_start(last + ONE_DAY),
                          sa.or_(_ACCOUNT.c.closed_at.is_(None),
                                 _ACCOUNT.c.closed_at >= day_start(first))))


def read_while_open():
    """WHERE: a `DailyFrozen` row (joined with its meter and account) was read while the
    meter's account, if any, was open."""
    return sa.or_(_METER.c.account_id.is_(None),
                  sa.and_(_ACCOUNT.c.created_at <= _DAY.c.read_at,
                          sa.or_(_ACCOUNT.c.closed_at.is_(None),
                                 _ACCOUNT.c.closed_at >= _DAY.c.read_at)))


def meters_due_by_day(session: Session, building_ids: list[int], first: dt.date,
                      last: dt.date, *, main_meters: bool = True) -> dict[dt.date, int]:
    """The meters that should have been read on each day of [first, last]: those due on
    `first`; on each later day, plus the accounts' meters opened that day, less those closed
    the day before (three queries, grouped by local day, whatever the number of days)."""
    base = session.execute(sa.select(sa.func.count()).select_from(METERS_ACCOUNTS)
                           .where(of_buildings(building_ids, main_meters=main_meters),
                                  open_in(first, first))).scalar()
    households = _METER.join(_ACCOUNT, _ACCOUNT.c.id == _METER.c.account_id)
    opened_on, closed_on = local_date(_ACCOUNT.c.created_at), local_date(_ACCOUNT.c.closed_at)
    opened = _by_date(dict(session.execute(
        sa.select(opened_on, sa.func.count()).select_from(households)
        .where(_ACCOUNT.c.building_id.in_(building_ids),
               _ACCOUNT.c.created_at >= day_start(first + ONE_DAY),
               _ACCOUNT.c.created_at < day_start(last + ONE_DAY))
        .group_by(opened_on)).all()))
    closed = _by_date(dict(session.execute(
        sa.select(closed_on, sa.func.count()).select_from(households)
        .where(_ACCOUNT.c.building_id.in_(building_ids),
               _ACCOUNT.c.closed_at >= day_start(first),
               _ACCOUNT.c.closed_at < day_start(last))
        .group_by(closed_on)).all()))
    out, due, day = {}, int(base), first
    while day <= last:
        if day > first:
            due += opened.get(day, 0) - closed.get(day - ONE_DAY, 0)
        out[day] = due
        day += ONE_DAY
    return out


def _meters_read_by_day(session: Session, building_ids: list[int], first: dt.date,
                        last: dt.date) -> dict[dt.date, int]:
    rows = session.execute(
        sa.select(_DAY.c.day, sa.func.count())
        .select_from(_DAY.join(METERS_ACCOUNTS, _METER.c.id == _DAY.c.meter_id))
        .where(_DAY.c.meter_id.in_(meters_of(building_ids)), _DAY.c.day >= first,
               _DAY.c.day <= last, read_while_open())
        .group_by(_DAY.c.day)).all()
    return _by_date(dict(rows))


# --- 费控执行成功率, 停电次数 -------------------------------------------------------------------

def _commands_by_day(session: Session, meters, start: dt.datetime, end: dt.datetime
                     ) -> dict[dt.date, dict[str, int]]:
    """Cut and restore commands issued in [start, end) by local day of issue and state now."""
    issued_on = local_date(_COMMAND.c.created_at)
    out: dict[dt.date, dict[str, int]] = defaultdict(dict)
    for day, state, n in session.execute(
            sa.select(issued_on, _COMMAND.c.state, sa.func.count())
            .where(_COMMAND.c.created_at >= start, _COMMAND.c.created_at < end,
                   _COMMAND.c.action.in_((CUT, RESTORE)), _COMMAND.c.meter_id.in_(meters))
            .group_by(issued_on, _COMMAND.c.state)):
        out[_as_date(day)][state] = int(n)
    return out


def _cuts_by_day(session: Session, meters, start: dt.datetime, end: dt.datetime
                 ) -> dict[dt.date, int]:
    """Cut commands confirmed in [start, end), by local day of confirmation."""
    done_on = local_date(_COMMAND.c.completed_at)
    return _by_date(dict(session.execute(
        sa.select(done_on, sa.func.count())
        .where(_COMMAND.c.completed_at >= start, _COMMAND.c.completed_at < end,
               _COMMAND.c.action == CUT, _COMMAND.c.state == DONE,
               _COMMAND.c.meter_id.in_(meters))
        .group_by(done_on)).all()))


# --- 缴费→复电 ---------------------------------------------------------------------------------

def _payment_waits(session: Session, building_ids: list[int], start: dt.datetime,
                   end: dt.datetime) -> dict[dt.date, list[float | None]]:
    """For each order paid in [start, end) that had a restore to wait for (see the module),
    the seconds from payment to power (None: a restore not confirmed), by local day paid."""
    households = (_ORDER.join(_ACCOUNT, _ACCOUNT.c.id == _ORDER.c.account_id)
                  .join(_METER, _METER.c.account_id == _ORDER.c.account_id)
                  .join(_COMMAND, _COMMAND.c.meter_id == _METER.c.id))
    rows = session.execute(
        sa.select(_ORDER.c.paid_at, sa.func.max(_COMMAND.c.completed_at),
                  sa.func.sum(sa.case((_COMMAND.c.state == DONE, 0), else_=1)))
        .select_from(households)
        .where(_ACCOUNT.c.building_id.in_(building_ids), _ORDER.c.paid_at >= start,
               _ORDER.c.paid_at < end, _COMMAND.c.action == RESTORE,
               _COMMAND.c.state != CANCELLED,
               seconds_between(_COMMAND.c.created_at, _ORDER.c.paid_at)
               <= PAYMENT_RESTORE_WINDOW_S,
               sa.or_(_COMMAND.c.completed_at.is_(None),
                      _COMMAND.c.completed_at >= _ORDER.c.paid_at))
        .group_by(_ORDER.c.id, _ORDER.c.paid_at)).all()
    out: dict[dt.date, list[float | None]] = defaultdict(list)
    for paid_at, restored_at, unconfirmed in rows:
        out[local_day(paid_at)].append(
            None if unconfirmed else (restored_at - paid_at).total_seconds())
    return out


def _by_date(rows: dict) -> dict[dt.date, int]:
    return {_as_date(k): int(v) for k, v in rows.items()}


def _as_date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
