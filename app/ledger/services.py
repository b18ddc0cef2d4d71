"""The ledger: the only way money moves on an account, and the only way a balance is read."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.ledger.models import LedgerEntry


def balance_fen(session: Session, account_id: int) -> int:
    """An account's balance in fen: the sum of its ledger. Never stored, never edited."""
    total = session.exec(
        select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).where(
            LedgerEntry.account_id == account_id
        )
    ).one()
    return int(total)


def balances_fen(session: Session, account_ids: set[int]) -> dict[int, int]:
    """Balances of many accounts in one query (each the sum of its ledger); 0 for none."""
    rows = session.exec(
        select(LedgerEntry.account_id, func.sum(LedgerEntry.amount_fen))
        .where(LedgerEntry.account_id.in_(account_ids))
        .group_by(LedgerEntry.account_id)
    ).all()
    found = {account_id: int(total) for account_id, total in rows}
    return {account_id: found.get(account_id, 0) for account_id in account_ids}


def post_entry(
    session: Session,
    *,
    account_id: int,
    amount_fen: int,
    kind: str,
    idempotency_key: str,
    memo: str = "",
    energy_wh: int | None = None,
) -> LedgerEntry | None:
    """Insert one ledger entry in the caller's transaction.

    Returns None, and changes nothing, when an entry with the same idempotency key exists
    already (the cause was posted before). The check runs inside a savepoint so a concurrent
    duplicate caught by the UNIQUE constraint does not spoil the caller's transaction.
    """
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool):
        raise TypeError("amount_fen must be an int (fen)")
    exists = session.exec(
        select(LedgerEntry.id).where(LedgerEntry.idempotency_key == idempotency_key)
    ).first()
    if exists is not None:
        return None
    entry = LedgerEntry(
        account_id=account_id,
        amount_fen=amount_fen,
        kind=kind,
        idempotency_key=idempotency_key,
        memo=memo,
        energy_wh=energy_wh,
    )
    try:
        with session.begin_nested():
            session.add(entry)
    except IntegrityError:
        return None
    return entry


def recent_entries(session: Session, account_id: int, limit: int = 10) -> list[LedgerEntry]:
    return list(
        session.exec(
            select(LedgerEntry)
            .where(LedgerEntry.account_id == account_id)
            .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
            .limit(limit)
        )
    )
