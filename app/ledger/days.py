"""账日冻结: each account's ledger frozen per local (China time) day (`LedgerDay`), and the money
figures of a set of buildings' accounts for days not frozen yet, read from the ledger itself:
what was billed (charges and shares) and the arrears (欠费) at each day's start and end.

Why a freeze: the ledger holds about 24 entries per account and day (hourly charges), so a
month of 10,000 accounts is 7 million entries, a year 87 million; summing them for a page took
seconds for a month (measured on SQLite: 2–6 s), a minute for a year, and the arrears at a past
day's end need every account's balance at that instant. Frozen, a day is one row per account
with entries that day, and a balance at a day's end is the account's latest row; the
buildings' days (`BuildingDay`, app/estate/freeze.py) are summed from these rows.

Rules:
- An entry belongs to the local day of its `created_at`, its insertion time (`post_entry`,
  `insert_entries` stamp `utcnow()`): a day does not change once it has ended and no
  transaction posting in it is open (`app.estate.freeze.FREEZE_DELAY` later).
- Days are frozen in order from the day of the ledger's first entry, each once
  (app/estate/freeze.py), so an account's `own_fen` is its previous row's plus the day's
  `net_fen`: one INSERT … SELECT over the day's entries (the `created_at` index).
- A day not frozen yet is read from the ledger, the balances carried from the last frozen day:
  the same figures (tested), dearer the more days are not frozen.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Sequence

import sqlalchemy as sa
from sqlmodel import Session

from app.db import utcnow
from app.estate.models import Account
from app.ledger.models import (CHARGE, EMERGENCY_CREDIT, SHARE, AccountBalance, LedgerDay,
                               LedgerEntry)
from app.tariffs import CHINA_TZ

ONE_DAY = dt.timedelta(days=1)
_ENTRY, _DAY, _ACCOUNT = LedgerEntry.__table__, LedgerDay.__table__, Account.__table__
_BALANCE = AccountBalance.__table__


def day_start(day: dt.date) -> dt.datetime:
    """Local midnight (China time) starting `day`, in UTC."""
    return dt.datetime.combine(day, dt.time(0), CHINA_TZ).astimezone(dt.timezone.utc)


def local_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(CHINA_TZ).date()


def owed(x):
    """SQL: what an own balance `x` owes: −x below zero, else 0."""
    return sa.case((x < 0, -x), else_=0)


# An entry's part of the own balance: everything but the emergency advance and its repayments.
_OWN = sa.case((_ENTRY.c.kind == EMERGENCY_CREDIT, 0), else_=_ENTRY.c.amount_fen)
_CHARGED = sa.case((_ENTRY.c.kind == CHARGE, -_ENTRY.c.amount_fen), else_=0)
_SHARED = sa.case((_ENTRY.c.kind == SHARE, -_ENTRY.c.amount_fen), else_=0)

# What a day's `LedgerDay` rows moved the arrears by: owed at the end less owed at the start.
ARREARS_MOVED = owed(_DAY.c.own_fen) - owed(_DAY.c.own_fen - _DAY.c.net_fen)


def freeze_ledger_day(session: Session, day: dt.date) -> int:
    """Write `day`'s `LedgerDay` rows (every account with entries that day), in the caller's
    transaction; returns how many. The day before must be frozen already (or no day before it
    have entries): each row's balance is its account's latest row's plus the day's."""
    start, end = day_start(day), day_start(day + ONE_DAY)
    prev = _DAY.alias("prev")
    carried = (sa.select(prev.c.own_fen)
               .where(prev.c.account_id == _ENTRY.c.account_id, prev.c.day < day)
               .order_by(prev.c.day.desc()).limit(1).scalar_subquery())
    net = sa.func.sum(_OWN)
    rows = (sa.select(_ENTRY.c.account_id, sa.literal(day, sa.Date), sa.func.sum(_CHARGED),
                      sa.func.sum(_SHARED), net, sa.func.coalesce(carried, 0) + net)
            .where(_ENTRY.c.created_at >= start, _ENTRY.c.created_at < end)
            .group_by(_ENTRY.c.account_id))
    return session.execute(sa.insert(_DAY).from_select(
        ["account_id", "day", "charged_fen", "shared_fen", "net_fen", "own_fen"], rows),
        execution_options={"preserve_rowcount": True}).rowcount


@dataclass(frozen=True)
class DayMoney:
    """A day's money for a set of buildings' accounts, fen: billed (`charged_fen` of their
    `charge` entries, `shared_fen` of their `share` entries, both as positive amounts) and the
    arrears (the sum over the accounts of what each owes, below zero own balance) at the day's
    start and end."""

    day: dt.date
    charged_fen: int
    shared_fen: int
    arrears_start_fen: int
    arrears_end_fen: int


def money_from_ledger(session: Session, building_ids: Sequence[int], first: dt.date,
                      last: dt.date, frozen: dt.date | None, *,
                      arrears_start: int | None = None) -> list[DayMoney]:
    """The `DayMoney` of each day of [first, last], days not frozen (after `frozen`, the last
    frozen day; or none), from the ledger: each day's entries summed (one query a day, the
    `created_at` index), and the arrears at each day's end: from the balances kept now
    (`account_balance`) for today and later, else from each account's balance then (its
    latest `LedgerDay` row up to `frozen`, plus its entries since). `arrears_start`: the
    arrears at `first`'s start when the caller knows them (the buildings' last frozen day)."""
    building_ids = list(building_ids)
    accounts = sa.select(_ACCOUNT.c.id).where(_ACCOUNT.c.building_id.in_(building_ids))
    today = local_day(utcnow())
    out, day = [], first
    arrears = (arrears_start if arrears_start is not None
               else arrears_at(session, building_ids, first, frozen))
    while day <= last:
        charged, shared = session.execute(
            sa.select(sa.func.coalesce(sa.func.sum(_CHARGED), 0),
                      sa.func.coalesce(sa.func.sum(_SHARED), 0))
            .where(_ENTRY.c.account_id.in_(accounts), _ENTRY.c.created_at >= day_start(day),
                   _ENTRY.c.created_at < day_start(day + ONE_DAY))).one()
        after = (arrears_now(session, building_ids) if day >= today
                 else arrears_at(session, building_ids, day + ONE_DAY, frozen))
        out.append(DayMoney(day, int(charged), int(shared), arrears, after))
        arrears = after
        day += ONE_DAY
    return out


def arrears_now(session: Session, building_ids: Sequence[int]) -> int:
    """What the buildings' accounts owe now: their kept balances (`account_balance`, the
    ledger's sum kept by the database) less their advances outstanding, where below zero."""
    own = _BALANCE.c.balance_fen - _BALANCE.c.advance_fen
    return int(session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(owed(own)), 0))
        .select_from(_BALANCE.join(_ACCOUNT, _ACCOUNT.c.id == _BALANCE.c.account_id))
        .where(_ACCOUNT.c.building_id.in_(list(building_ids)))).scalar())


def arrears_at(session: Session, building_ids: Sequence[int], day: dt.date,
               frozen: dt.date | None) -> int:
    """What the buildings' accounts owed at `day`'s local start: the sum of their own balances
    below zero, each its latest `LedgerDay` row before `day` (up to `frozen`, the last frozen
    day: an index probe per account) plus its entries since (one grouped range of the ledger)."""
    base = day - ONE_DAY if frozen is None or frozen >= day - ONE_DAY else frozen
    carried = sa.func.coalesce(
        sa.select(_DAY.c.own_fen)
        .where(_DAY.c.account_id == _ACCOUNT.c.id, _DAY.c.day <= base)
        .order_by(_DAY.c.day.desc()).limit(1).correlate(_ACCOUNT).scalar_subquery(), 0)
    if frozen is not None and base >= day - ONE_DAY:
        own, joined = carried, _ACCOUNT
    else:  # entries not frozen before `day`'s start
        since = sa.select(_ENTRY.c.account_id, sa.func.sum(_OWN).label("own")).where(
            _ENTRY.c.created_at < day_start(day), _ENTRY.c.account_id.in_(
                sa.select(_ACCOUNT.c.id).where(_ACCOUNT.c.building_id.in_(list(building_ids)))))
        if frozen is not None:
            since = since.where(_ENTRY.c.created_at >= day_start(base + ONE_DAY))
        since = since.group_by(_ENTRY.c.account_id).subquery("since")
        own = carried + sa.func.coalesce(since.c.own, 0)
        joined = _ACCOUNT.outerjoin(since, since.c.account_id == _ACCOUNT.c.id)
    balances = (sa.select(own.label("own")).select_from(joined)
                .where(_ACCOUNT.c.building_id.in_(list(building_ids))).subquery())
    return int(session.execute(sa.select(sa.func.coalesce(sa.func.sum(owed(balances.c.own)), 0)))
               .scalar())
