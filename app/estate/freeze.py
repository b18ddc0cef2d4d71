"""日冻结 of the figures: each ended local (China time) day frozen once, so that the indicators of
a month or a year (app/estate/indicators.py) read a few rows per building and day instead of
every meter's day and every ledger entry: the accounts' ledger days (`LedgerDay`,
app/ledger/days.py) and, summed from them and from the meters' days, the buildings' days
(`BuildingDay`).

Rules:
- A day is frozen once it has ended and `FREEZE_DELAY` has passed (its readings and its
  ledger entries are all stored by then), by the billing jobs (`freeze_due_days`, every sweep:
  the days due, oldest first, at most `MAX_DAYS` a sweep, one transaction a day).
- Days are frozen in order, from the day of the ledger's first entry, each once: the
  `frozen_day` row is inserted first (its primary key: a second process freezing the same day
  fails there and leaves it), and a day whose previous day is not frozen is not frozen.
- A building's day: its meters that should have been read and those read (as the reading
  success rate counts them), its accounts' charges and shares, and the arrears at the day's
  start (the previous day's end) and end (the start moved by its accounts' `LedgerDay` rows).
  A row for every building, every day.
- What happened after the freeze to a frozen day does not change it: readings are stored under
  the day they were taken, entries under the day they were posted. Commands (their state moves
  for hours) and payments are not frozen: the indicators read them where they are.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.db import transaction, utcnow
from app.estate.indicators import METERS_ACCOUNTS, frozen_through, open_in, read_while_open
from app.estate.models import Account, Building, BuildingDay, DailyFrozen, FrozenDay, Meter
from app.ledger.days import ARREARS_MOVED, ONE_DAY, freeze_ledger_day, local_day
from app.ledger.models import LedgerDay, LedgerEntry

FREEZE_DELAY = dt.timedelta(minutes=10)
MAX_DAYS = 14  # a long catch-up (a first run over a year of ledger) spreads over sweeps

_RUN, _BDAY, _LDAY = FrozenDay.__table__, BuildingDay.__table__, LedgerDay.__table__
_METER, _ACCOUNT, _DAY = Meter.__table__, Account.__table__, DailyFrozen.__table__
_BUILDING = Building.__table__


def freeze_due_days(engine, now: dt.datetime | None = None, limit: int = MAX_DAYS
                    ) -> list[dt.date]:
    """Freeze the local days ended `FREEZE_DELAY` ago and not frozen yet, oldest first (at most
    `limit`), one transaction each; returns the days this call froze."""
    now = now or utcnow()
    last_due = local_day(now - FREEZE_DELAY) - ONE_DAY
    with transaction(engine, read_only=True) as s:
        last = frozen_through(s)
        if last is None:
            first_at = s.execute(sa.select(sa.func.min(LedgerEntry.created_at))).scalar()
            if first_at is None:
                return []
            day = local_day(first_at)
        else:
            day = last + ONE_DAY
    frozen = []
    while day <= last_due and len(frozen) < limit:
        with transaction(engine) as s:
            if freeze_day(s, day) is None:
                break  # frozen meanwhile by another process
        frozen.append(day)
        day += ONE_DAY
    return frozen


def freeze_day(session: Session, day: dt.date) -> int | None:
    """Freeze `day` (ended: see the module) in the caller's transaction: its `frozen_day` row,
    the accounts' `LedgerDay` rows and every building's `BuildingDay` row; returns the number of
    accounts with entries that day, or None when the day is frozen already or the day before is
    not (while any day is)."""
    last = frozen_through(session)
    if last is not None and last != day - ONE_DAY:
        return None
    try:
        with session.begin_nested():
            session.execute(sa.insert(_RUN).values(day=day, accounts=0, frozen_at=utcnow()))
    except IntegrityError:
        return None
    accounts = freeze_ledger_day(session, day)
    session.execute(sa.update(_RUN).where(_RUN.c.day == day).values(accounts=accounts))
    _freeze_buildings(session, day)
    return accounts


def _freeze_buildings(session: Session, day: dt.date) -> None:
    """Every building's row of `day`: one INSERT … SELECT joining four grouped queries."""
    building = sa.func.coalesce(_ACCOUNT.c.building_id, _METER.c.building_id)
    due = (sa.select(building.label("b"), sa.func.count().label("n"))
           .select_from(METERS_ACCOUNTS).where(open_in(day, day))
           .group_by(building).subquery("due"))
    read = (sa.select(building.label("b"), sa.func.count().label("n"))
            .select_from(_DAY.join(METERS_ACCOUNTS, _METER.c.id == _DAY.c.meter_id))
            .where(_DAY.c.day == day, read_while_open())
            .group_by(building).subquery("read"))
    money = (sa.select(_ACCOUNT.c.building_id.label("b"),
                       sa.func.sum(_LDAY.c.charged_fen).label("charged"),
                       sa.func.sum(_LDAY.c.shared_fen).label("shared"),
                       sa.func.sum(ARREARS_MOVED).label("moved"))
             .select_from(_LDAY.join(_ACCOUNT, _ACCOUNT.c.id == _LDAY.c.account_id))
             .where(_LDAY.c.day == day).group_by(_ACCOUNT.c.building_id).subquery("money"))
    prev = _BDAY.alias("prev")
    start = sa.func.coalesce(prev.c.arrears_end_fen, 0)
    rows = (sa.select(_BUILDING.c.id, sa.literal(day, sa.Date),
                      sa.func.coalesce(due.c.n, 0), sa.func.coalesce(read.c.n, 0),
                      sa.func.coalesce(money.c.charged, 0), sa.func.coalesce(money.c.shared, 0),
                      start, start + sa.func.coalesce(money.c.moved, 0))
            .select_from(_BUILDING.outerjoin(due, due.c.b == _BUILDING.c.id)
                         .outerjoin(read, read.c.b == _BUILDING.c.id)
                         .outerjoin(money, money.c.b == _BUILDING.c.id)
                         .outerjoin(prev, sa.and_(prev.c.building_id == _BUILDING.c.id,
                                                  prev.c.day == day - ONE_DAY))))
    session.execute(sa.insert(_BDAY).from_select(
        ["building_id", "day", "meters", "meters_read", "charged_fen", "shared_fen",
         "arrears_start_fen", "arrears_end_fen"], rows))
