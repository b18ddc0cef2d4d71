"""The daily proof that every kept balance is its ledger's sum (app/ledger/models.py:
AccountBalance).

`verify_balances` sums the whole ledger per account, in one pass over the table in the
database, and compares each sum (and the count of entries and the emergency advance) with the
kept row. An account that differs gets one open `balance_mismatch` anomaly naming both figures,
and the cut policy refuses to cut it until a manager resolved it (`decide_cut`:
`balance_unverified`); the account's row is not corrected by this check: a person must find out
why. The billing jobs run it once a local day (`due_for_check`); `feikong ledger verify` on
demand. Its cost grows with the ledger (one scan a day, in the background), never a page's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, select

from app.anomalies.models import BALANCE_MISMATCH, Anomaly
from app.db import transaction, utcnow
from app.estate.models import Account
from app.ledger.models import EMERGENCY_CREDIT, AccountBalance, LedgerEntry
from app.money import fen_to_yuan_str

_LEDGER, _BALANCE, _ACCOUNT = LedgerEntry.__table__, AccountBalance.__table__, Account.__table__
_SUMS = (
    sa.select(_LEDGER.c.account_id.label("account_id"),
              sa.func.sum(_LEDGER.c.amount_fen).label("balance"),
              sa.func.sum(sa.case((_LEDGER.c.kind == EMERGENCY_CREDIT, _LEDGER.c.amount_fen),
                                  else_=0)).label("advance"),
              sa.func.count().label("entries"))
    .group_by(_LEDGER.c.account_id).subquery())
# Kept and summed side by side, in one statement (so in one snapshot on any isolation level).
_SIDE_BY_SIDE = (
    sa.select(_ACCOUNT.c.id, _BALANCE.c.balance_fen, _BALANCE.c.advance_fen,
              _BALANCE.c.entry_count, _SUMS.c.balance, _SUMS.c.advance, _SUMS.c.entries)
    .select_from(_ACCOUNT.outerjoin(_BALANCE, _BALANCE.c.account_id == _ACCOUNT.c.id)
                 .outerjoin(_SUMS, _SUMS.c.account_id == _ACCOUNT.c.id))
    .order_by(_ACCOUNT.c.id))


@dataclass(frozen=True)
class Mismatch:
    account_id: int
    kept: tuple  # balance, advance, entries as kept (None each: no row kept)
    summed: tuple[int, int, int]  # the same summed from the ledger


@dataclass(frozen=True)
class Verification:
    accounts: int
    entries: int
    mismatches: list[Mismatch]
    checked_at: dt.datetime


def verify_balances(engine, now: dt.datetime | None = None) -> Verification:
    """Compare every kept balance with its ledger's sum (one read-only snapshot), then record
    an anomaly for each account that differs and has none open (one write transaction)."""
    now = now or utcnow()
    mismatches, accounts, entries = [], 0, 0
    with transaction(engine, read_only=True) as s:
        for account_id, *figures in s.execute(_SIDE_BY_SIDE):
            kept = tuple(int(x) if x is not None else None for x in figures[:3])
            summed = tuple(int(x or 0) for x in figures[3:])
            accounts += 1
            entries += summed[2]
            if kept != summed:
                mismatches.append(Mismatch(account_id, kept, summed))
    if mismatches:
        with transaction(engine) as s:
            _record(s, mismatches, now)
    return Verification(accounts, entries, mismatches, now)


def _record(s: Session, mismatches: list[Mismatch], now: dt.datetime) -> None:
    open_ = set(s.exec(select(Anomaly.account_id).where(Anomaly.kind == BALANCE_MISMATCH,
                                                        Anomaly.resolved_at.is_(None))))
    for m in mismatches:
        if m.account_id in open_:
            continue
        (sb, sa_, sc) = m.summed
        if m.kept[0] is None:
            kept = "no kept balance"
        else:
            kb, ka, kc = m.kept
            kept = (f"kept balance {fen_to_yuan_str(kb)} 元 (advance {fen_to_yuan_str(ka)}, "
                    f"{kc} entries)")
        s.add(Anomaly(kind=BALANCE_MISMATCH, account_id=m.account_id, created_at=now,
                      detail=(f"{kept} ≠ ledger sum "
                              f"{fen_to_yuan_str(sb)} 元 (advance {fen_to_yuan_str(sa_)}, "
                              f"{sc} entries): no automatic cut until resolved")[:500]))


def balance_unverified(session: Session, account_id: int) -> bool:
    """Whether the account has an open `balance_mismatch` anomaly (the cut policy refuses)."""
    return session.exec(select(Anomaly.id).where(
        Anomaly.kind == BALANCE_MISMATCH, Anomaly.account_id == account_id,
        Anomaly.resolved_at.is_(None))).first() is not None
