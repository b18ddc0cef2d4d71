"""A building's (or several buildings') monthly bills: one row per household, as the
resident's bill of that month tells it (app/resident/statements.py: `month_bill`), read for many
households at once.

`month_bill` reads one household with about six queries; 10,000 households would be 60,000. Here
the same figures come by chunks of `CHUNK` households, a few queries a chunk:
- the opening balance at the month's first local midnight: each household's latest `LedgerDay`
  row up to the last frozen day (a correlated index probe), plus its entries since, not frozen
  yet (one grouped range), plus the emergency advance outstanding then (`advance_at`, only for
  the households that ever took one: their advances' keys, `emergency:<account>:<YYYY-MM>`, are
  one range of the unique index);
- the month's entries other than charges, one by one (payments, refunds, adjustments, shares,
  openings, advances), and its charges grouped by household and memo (the database sums them),
  both by the (account_id, created_at) index;
and each household's `Bill` is made by the same rules as `month_bill` (`bill_from_rows`), the
energy lines by `energy_lines` itself. A test holds each household's figures equal to
`month_bill`'s, and every column's total equal to the ledger's own sums, to the fen.

`closing = opening + charges + shares + payments + refunds + adjustments + emergency +
openings`, every figure signed as the ledger's; the sheet shows charges, shares and refunds as
positive amounts (what was billed, what went back) and says so in its 说明.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import sqlalchemy as sa
from sqlalchemy import bindparam
from sqlmodel import Session

from app.estate.models import Account, Building
from app.ledger.days import ONE_DAY, day_start, local_day
from app.ledger.models import CHARGE, EMERGENCY_CREDIT, LedgerDay, LedgerEntry
from app.db import utcnow
from app.resident.statements import (Bill, ChargeGroup, add_entry, advance_at, energy_lines,
                                     frozen_through, month_of, next_month)

CHUNK = 500  # households a set of queries
_ENTRY, _LDAY, _ACCOUNT = LedgerEntry.__table__, LedgerDay.__table__, Account.__table__
_OWN = sa.case((_ENTRY.c.kind == EMERGENCY_CREDIT, 0), else_=_ENTRY.c.amount_fen)


@dataclass(frozen=True)
class Household:
    """A household of a bills sheet (what the sheet shows of the account)."""

    id: int
    number: str
    building_id: int
    building: str
    household: str
    holder_name: str
    holder_phone: str


def households(session: Session, building_ids: Sequence[int]) -> list[Household]:
    """The buildings' accounts (closed ones too: a month they were open in has a bill), by
    building, household and 户号."""
    rows = session.execute(
        sa.select(_ACCOUNT.c.id, _ACCOUNT.c.number, _ACCOUNT.c.building_id, Building.name,
                  _ACCOUNT.c.household, _ACCOUNT.c.holder_name, _ACCOUNT.c.holder_phone)
        .join(Building, Building.id == _ACCOUNT.c.building_id)
        .where(_ACCOUNT.c.building_id.in_(list(building_ids) or [-1]))
        .order_by(_ACCOUNT.c.building_id, _ACCOUNT.c.household, _ACCOUNT.c.number))
    return [Household(*row) for row in rows]


_IDS = bindparam("ids", expanding=True)
_OWN_AT = (sa.select(_ACCOUNT.c.id, sa.select(_LDAY.c.own_fen)
                     .where(_LDAY.c.account_id == _ACCOUNT.c.id, _LDAY.c.day <= bindparam("d"))
                     .order_by(_LDAY.c.day.desc()).limit(1).correlate(_ACCOUNT)
                     .scalar_subquery())
           .where(_ACCOUNT.c.id.in_(_IDS)))
_IN_WINDOW = (_ENTRY.c.account_id.in_(_IDS), _ENTRY.c.created_at >= bindparam("s"),
              _ENTRY.c.created_at < bindparam("e"))
_OWN_SINCE = (sa.select(_ENTRY.c.account_id, sa.func.sum(_OWN))
              .where(*_IN_WINDOW).group_by(_ENTRY.c.account_id))
_OWN_BEFORE = (sa.select(_ENTRY.c.account_id, sa.func.sum(_OWN))
               .where(_ENTRY.c.account_id.in_(_IDS), _ENTRY.c.created_at < bindparam("e"))
               .group_by(_ENTRY.c.account_id))
_ROWS = (sa.select(_ENTRY.c.account_id, _ENTRY.c.kind, _ENTRY.c.amount_fen, _ENTRY.c.memo,
                   _ENTRY.c.created_at)
         .where(*_IN_WINDOW, _ENTRY.c.kind != CHARGE)
         .order_by(_ENTRY.c.account_id, _ENTRY.c.created_at, _ENTRY.c.id))
# The charges by memo: about 24 a day, far fewer memos; summed by the database. (Both queries
# in one, the others grouped by their id, took SQLite longer than the two: measured.)
_CHARGES = (sa.select(_ENTRY.c.account_id, _ENTRY.c.memo, sa.func.sum(_ENTRY.c.amount_fen),
                      sa.func.sum(_ENTRY.c.energy_wh), sa.func.count(_ENTRY.c.energy_wh),
                      sa.func.count())
            .where(*_IN_WINDOW, _ENTRY.c.kind == CHARGE)
            .group_by(_ENTRY.c.account_id, _ENTRY.c.memo))


def advanced_accounts(session: Session) -> set[int]:
    """The accounts that ever took an emergency advance: the keys `emergency:<id>:<YYYY-MM>`
    are one range of the ledger's unique index (advances are rare: at most one a month)."""
    keys = session.execute(sa.select(_ENTRY.c.idempotency_key).where(
        _ENTRY.c.idempotency_key >= "emergency:",
        _ENTRY.c.idempotency_key < "emergency;")).scalars()
    return {int(key.split(":")[1]) for key in keys}


def openings(session: Session, ids: list[int], month: dt.date, frozen: dt.date | None,
             advanced: set[int]) -> dict[int, int]:
    """Each account's balance (fen, advances included) at the local midnight starting `month`,
    as `app.resident.statements.balance_at` reads it, for many accounts at once."""
    at, before = day_start(month), month - ONE_DAY
    base = before if frozen is not None and frozen >= before else frozen
    own = dict.fromkeys(ids, 0)
    if base is not None:
        for account_id, fen in session.execute(_OWN_AT, {"ids": ids, "d": base}):
            own[account_id] = int(fen or 0)
        if base < before:
            for account_id, fen in session.execute(
                    _OWN_SINCE, {"ids": ids, "s": day_start(base + ONE_DAY), "e": at}):
                own[account_id] += int(fen)
    else:
        for account_id, fen in session.execute(_OWN_BEFORE, {"ids": ids, "e": at}):
            own[account_id] += int(fen)
    for account_id in advanced.intersection(ids):
        own[account_id] += advance_at(session, SimpleNamespace(id=account_id), at)
    return own


def bill_from_rows(month: dt.date, opening: int, rows: list[tuple], charges: list[ChargeGroup],
                   current: bool) -> Bill:
    """A household's `Bill` from its month's entries other than charges (kind, amount, memo,
    created_at; in time order) and its charges by memo: `month_bill`'s rules, without the
    share bases (how the building's common charge was split) and the pending charge of the
    current month, which a sheet does not show."""
    bill = Bill(month=month, opening_fen=opening, closing_fen=opening, current=current)
    for kind, amount, memo, at in rows:
        add_entry(bill, kind, amount, memo, at)  # a share: in bill.shares_fen, one sum
    for group in charges:
        bill.entries += group.count
        bill.closing_fen += group.amount_fen
        bill.charges_fen += group.amount_fen
        bill.energy_wh += group.energy_wh
    bill.energy_lines, bill.by_time = energy_lines(charges)
    return bill


def month_bills(session: Session, building_ids: Sequence[int], month: dt.date, *,
                now: dt.datetime | None = None,
                progress: Callable[[int, int], None] | None = None
                ) -> Iterator[tuple[Household, Bill]]:
    """Every household of the buildings with its bill of the local `month`, `CHUNK` households
    at a time (progress: households done, of how many)."""
    month = month_of(month)
    current = month_of(local_day(now or utcnow())) == month
    everyone = households(session, building_ids)
    frozen = frozen_through(session)
    advanced = advanced_accounts(session)
    window = {"s": day_start(month), "e": day_start(next_month(month))}
    for k in range(0, len(everyone), CHUNK):
        chunk = everyone[k:k + CHUNK]
        ids = [h.id for h in chunk]
        opening = openings(session, ids, month, frozen, advanced)
        rows: dict[int, list] = {i: [] for i in ids}
        for account_id, kind, amount, memo, at in session.execute(_ROWS, {"ids": ids, **window}):
            rows[account_id].append((kind, amount, memo, at))
        charges: dict[int, list] = {i: [] for i in ids}
        for account_id, memo, amount, wh, with_wh, count in session.execute(
                _CHARGES, {"ids": ids, **window}):
            charges[account_id].append(ChargeGroup(memo or "", int(amount), int(wh or 0),
                                                   with_wh, count))
        for h in chunk:
            yield h, bill_from_rows(month, opening[h.id], rows[h.id], charges[h.id], current)
        if progress is not None:
            progress(k + len(chunk), len(everyone))
