"""The ledger: the only way money moves on an account, and the only way a balance is read."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from app.db import utcnow
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
) -> int | None:
    """Insert one ledger entry in the caller's transaction; returns its id, or None, changing
    nothing, when an entry with the same idempotency key exists already (the cause was posted
    before).

    One statement, `INSERT … ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`, on SQLite
    and PostgreSQL alike: a concurrent duplicate is skipped by the UNIQUE constraint itself, so
    it can neither post twice nor spoil the caller's transaction.
    """
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool):
        raise TypeError("amount_fen must be an int (fen)")
    return session.execute(_INSERT_ENTRY[session.get_bind().dialect.name], dict(
        account_id=account_id, amount_fen=amount_fen, kind=kind,
        idempotency_key=idempotency_key, memo=memo, energy_wh=energy_wh,
        created_at=utcnow())).scalar()


def post_entries(session: Session, entries: list[dict]) -> None:
    """Insert many ledger entries in the caller's transaction, in one statement; each skipped,
    changing nothing, when an entry with its idempotency key exists already (as `post_entry`).
    Each entry: account_id, amount_fen (int fen), kind, idempotency_key, memo, energy_wh."""
    if not entries:
        return
    for entry in entries:
        if not isinstance(entry["amount_fen"], int) or isinstance(entry["amount_fen"], bool):
            raise TypeError("amount_fen must be an int (fen)")
    now = utcnow()
    session.execute(_INSERT_ENTRIES[session.get_bind().dialect.name],
                    [{**entry, "created_at": now} for entry in entries])


# Built once: a statement's construction costs more than its execution on this path.
_INSERT_ENTRIES = {
    name: insert(LedgerEntry.__table__).on_conflict_do_nothing(index_elements=["idempotency_key"])
    for name, insert in (("sqlite", sqlite_insert), ("postgresql", pg_insert))
}
_INSERT_ENTRY = {
    name: insert(LedgerEntry.__table__).on_conflict_do_nothing(index_elements=["idempotency_key"])
    .returning(LedgerEntry.__table__.c.id)
    for name, insert in (("sqlite", sqlite_insert), ("postgresql", pg_insert))
}


def recent_entries(session: Session, account_id: int, limit: int = 10) -> list[LedgerEntry]:
    return list(
        session.exec(
            select(LedgerEntry)
            .where(LedgerEntry.account_id == account_id)
            .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
            .limit(limit)
        )
    )
