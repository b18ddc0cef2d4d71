"""Arrears and their age (欠费与账龄): the households whose own balance is below zero now, what
each owes, and since when.

"Own balance" as the arrears of the indicators count it (app/ledger/days.py): the ledger's sum
less the emergency advance outstanding (`account_balance.balance_fen − advance_fen`; below
zero, the household owes that much). Its age is the number of local days since the balance last
went below zero at a day's end and stayed there: the day after the last day that ended at or
above zero (0 days: it went below today).

Cheap because the days are frozen (账日冻结, `LedgerDay`: an account's own balance at the end of
each day with entries, carried over the days without): for each household below zero, the last
frozen day that ended at or above zero is one backward read of its rows, and the first row
after it one index probe; the days not frozen yet (after the last frozen day, up to yesterday)
are summed from the ledger by day (one grouped range for a chunk of households) and walked on
from the frozen balance. Nothing scans the whole ledger.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import bindparam
from sqlmodel import Session

from app.db import local_date, utcnow
from app.estate.models import Account, Building
from app.ledger.days import ONE_DAY, day_start, local_day
from app.ledger.models import EMERGENCY_CREDIT, AccountBalance, LedgerDay, LedgerEntry
from app.resident.statements import frozen_through

BUCKETS = ((0, 30, "0–30 天"), (31, 90, "31–90 天"), (91, 180, "91–180 天"),
           (181, None, "180 天以上"))
CHUNK = 500
_ENTRY, _LDAY, _BALANCE = LedgerEntry.__table__, LedgerDay.__table__, AccountBalance.__table__
_OWN = sa.case((_ENTRY.c.kind == EMERGENCY_CREDIT, 0), else_=_ENTRY.c.amount_fen)


def bucket_of(age_days: int) -> int:
    """The index in `BUCKETS` of an age in days."""
    for i, (low, high, _label) in enumerate(BUCKETS):
        if age_days >= low and (high is None or age_days <= high):
            return i
    return 0


@dataclass(frozen=True)
class Arrear:
    account_id: int
    number: str
    building: str
    household: str
    holder_name: str
    holder_phone: str
    owed_fen: int  # > 0
    since: dt.date  # the first local day of the episode below zero
    age_days: int

    @property
    def bucket(self) -> int:
        return bucket_of(self.age_days)


_LAST_ROW = (sa.select(_LDAY.c.own_fen).where(
    _LDAY.c.account_id == bindparam("a"), _LDAY.c.day <= bindparam("f"))
    .order_by(_LDAY.c.day.desc()).limit(1))
_LAST_UP = (sa.select(_LDAY.c.day).where(
    _LDAY.c.account_id == bindparam("a"), _LDAY.c.day <= bindparam("f"), _LDAY.c.own_fen >= 0)
    .order_by(_LDAY.c.day.desc()).limit(1))
_FIRST_AFTER = (sa.select(_LDAY.c.day).where(
    _LDAY.c.account_id == bindparam("a"), _LDAY.c.day > bindparam("d"),
    _LDAY.c.day <= bindparam("f")).order_by(_LDAY.c.day).limit(1))


def _as_date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def arrears(session: Session, building_ids: Sequence[int], *,
            now: dt.datetime | None = None) -> list[Arrear]:
    """The buildings' households below zero now, oldest arrears first."""
    today = local_day(now or utcnow())
    own = _BALANCE.c.balance_fen - _BALANCE.c.advance_fen
    below = session.execute(
        sa.select(Account.id, Account.number, Building.name, Account.household,
                  Account.holder_name, Account.holder_phone, own)
        .join(_BALANCE, _BALANCE.c.account_id == Account.id)
        .join(Building, Building.id == Account.building_id)
        .where(Account.building_id.in_(list(building_ids) or [-1]), own < 0)
        .order_by(Account.building_id, Account.household, Account.number)).all()
    frozen = frozen_through(session)
    if frozen is not None and frozen >= today:
        frozen = today - ONE_DAY
    out = []
    for k in range(0, len(below), CHUNK):
        chunk = below[k:k + CHUNK]
        since = _episodes(session, [row[0] for row in chunk], frozen, today)
        for account_id, number, building, household, name, phone, balance in chunk:
            start = since[account_id]
            out.append(Arrear(account_id, number, building, household, name, phone,
                              -int(balance), start, (today - start).days))
    out.sort(key=lambda a: (-a.age_days, a.building, a.household, a.number))
    return out


def _episodes(session: Session, ids: list[int], frozen: dt.date | None,
              today: dt.date) -> dict[int, dt.date]:
    """For accounts below zero now: the first local day of their episode below zero."""
    state: dict[int, tuple[int, dt.date | None]] = {}  # balance at `frozen`'s end, since
    for account_id in ids:
        if frozen is None:
            state[account_id] = (0, None)
            continue
        balance = session.execute(_LAST_ROW, {"a": account_id, "f": frozen}).scalar()
        if balance is None or balance >= 0:
            state[account_id] = (int(balance or 0), None)
            continue
        up = session.execute(_LAST_UP, {"a": account_id, "f": frozen}).scalar()
        first = session.execute(_FIRST_AFTER, {"a": account_id, "f": frozen,
                                               "d": up if up is not None else dt.date(1, 1, 1)}
                                ).scalar()
        state[account_id] = (int(balance), _as_date(first))
    start = day_start(frozen + ONE_DAY) if frozen is not None else None
    if frozen is None or frozen < today - ONE_DAY:  # the days not frozen yet, up to yesterday
        day = local_date(_ENTRY.c.created_at)
        query = (sa.select(_ENTRY.c.account_id, day, sa.func.sum(_OWN))
                 .where(_ENTRY.c.account_id.in_(ids), _ENTRY.c.created_at < day_start(today))
                 .group_by(_ENTRY.c.account_id, day).order_by(_ENTRY.c.account_id, day))
        if start is not None:
            query = query.where(_ENTRY.c.created_at >= start)
        for account_id, d, fen in session.execute(query):
            balance, since = state[account_id]
            balance += int(fen)
            if balance >= 0:
                since = None
            elif since is None:
                since = _as_date(d)
            state[account_id] = (balance, since)
    return {account_id: since or today for account_id, (_balance, since) in state.items()}
