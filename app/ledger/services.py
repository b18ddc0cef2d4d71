"""The ledger: the only way money moves on an account, and the only way a balance is read."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from app.db import UTCDateTime, utcnow
from app.estate.models import Meter
from app.ledger.models import AccountBalance, LedgerEntry
from app.money import e7_to_fen


@dataclass(frozen=True)
class Funds:
    """What an account has, as everything that judges it reads it."""

    balance_fen: int  # the ledger's sum less the charge accrued and not yet posted (below)
    advance_fen: int  # the emergency advance outstanding (≥ 0)
    metered: bool  # the account has a meter


def balance_fen(session: Session, account_id: int) -> int:
    """An account's balance in fen, the one figure the resident page, the console, the cut
    policy and the warnings use: the sum of its ledger (kept in `account_balance` by the
    database, in each entry's own transaction: one row read, whatever the ledger's age) less
    what its meters have accrued and not yet posted (`Meter.billed_exact_e7` rounded by the one
    rule, less `Meter.billed_fen`: app/billing/services.py posts it hourly)."""
    return funds(session, {account_id})[account_id].balance_fen


def kept_balance_fen(session: Session, account_id: int) -> int:
    """The sum of the account's ledger, as kept (`account_balance`): without what is accrued."""
    return int(session.execute(_KEPT, {"id": account_id}).scalar() or 0)


def kept_balances(session: Session, account_ids: set[int]) -> dict[int, int]:
    """`kept_balance_fen` of many accounts in one query (only those with a balance row)."""
    found: dict[int, int] = {}
    for ids in _chunks(sorted(account_ids)):
        found.update(session.execute(_KEPT_MANY, {"ids": ids}).all())
    return found


def balances_fen(session: Session, account_ids: set[int]) -> dict[int, int]:
    """`balance_fen` of many accounts in one query; 0 for an account without a balance row."""
    return {account_id: f.balance_fen for account_id, f in funds(session, account_ids).items()}


def funds(session: Session, account_ids: set[int]) -> dict[int, Funds]:
    """Balance, advance outstanding and whether metered, of each account, in one query."""
    found: dict[int, list[int]] = {}
    for ids in _chunks(sorted(account_ids)):
        for account_id, balance, advance, exact_e7, posted in session.execute(
                _FUNDS, {"ids": ids}):
            state = found.setdefault(account_id, [balance, advance, 0])
            if exact_e7 is not None:
                state[2] = 1
                state[0] -= e7_to_fen(exact_e7) - posted
    return {account_id: (Funds(s[0], max(0, s[1]), bool(s[2])) if (s := found.get(account_id))
                         else Funds(0, 0, False))
            for account_id in account_ids}


def _chunks(ids: list[int], size: int = 1000):
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def lock_balances(session: Session, account_ids) -> dict[int, int]:
    """Lock the balance rows of `account_ids` in ascending order, before a transaction that
    posts to several accounts (or to one while holding meter rows) posts anything: every
    entry's trigger updates its account's row, so two transactions taking the rows in
    different orders could deadlock. PostgreSQL only; SQLite has one writer at a time.
    Returns the kept balances it locked (as `kept_balances`; {} on SQLite, where it reads
    nothing)."""
    if session.get_bind().dialect.name != "postgresql" or not account_ids:
        return {}
    found: dict[int, int] = {}
    for ids in _chunks(sorted(set(account_ids))):
        found.update(session.execute(_LOCK, {"ids": ids}).all())
    return found


_BALANCE, _METER = AccountBalance.__table__, Meter.__table__
_FUNDS = (sa.select(_BALANCE.c.account_id, _BALANCE.c.balance_fen, _BALANCE.c.advance_fen,
                    _METER.c.billed_exact_e7, _METER.c.billed_fen)
          .select_from(_BALANCE.outerjoin(_METER, _METER.c.account_id == _BALANCE.c.account_id))
          .where(_BALANCE.c.account_id.in_(bindparam("ids", expanding=True))))
_KEPT = sa.select(_BALANCE.c.balance_fen).where(_BALANCE.c.account_id == bindparam("id"))
_KEPT_MANY = sa.select(_BALANCE.c.account_id, _BALANCE.c.balance_fen).where(
    _BALANCE.c.account_id.in_(bindparam("ids", expanding=True)))
_LOCK = (sa.select(_BALANCE.c.account_id, _BALANCE.c.balance_fen)
         .where(_BALANCE.c.account_id.in_(bindparam("ids", expanding=True)))
         .order_by(_BALANCE.c.account_id).with_for_update())


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
    connection = session.connection()
    if connection.dialect.name == "postgresql":  # the rows as arrays: one statement, in order
        connection.execute(_INSERT_ENTRIES_PG, {
            name: [entry[name] for entry in entries]
            for name in ("account_id", "amount_fen", "kind", "idempotency_key", "memo",
                         "energy_wh")} | {"now": now})
        return
    connection.execute(_INSERT_ENTRIES["sqlite"],
                       [{**entry, "created_at": now} for entry in entries])


# Built once: a statement's construction costs more than its execution on this path.
_INSERT_ENTRIES = {
    name: insert(LedgerEntry.__table__).on_conflict_do_nothing(index_elements=["idempotency_key"])
    for name, insert in (("sqlite", sqlite_insert), ("postgresql", pg_insert))
}
# PostgreSQL: an executemany would process and send every row on its own (the notify desk posts
# a batch's top-ups at once: bench.notify)
_INSERT_ENTRIES_PG = sa.text(
    f"INSERT INTO {LedgerEntry.__tablename__} (account_id, amount_fen, kind, idempotency_key, "
    "memo, energy_wh, created_at) SELECT v.account_id, v.amount_fen, v.kind, v.idempotency_key, "
    "v.memo, v.energy_wh, :now FROM unnest(CAST(:account_id AS integer[]), "
    "CAST(:amount_fen AS bigint[]), CAST(:kind AS varchar[]), CAST(:idempotency_key AS "
    "varchar[]), CAST(:memo AS varchar[]), CAST(:energy_wh AS bigint[])) WITH ORDINALITY "
    "AS v(account_id, amount_fen, kind, idempotency_key, memo, energy_wh, n) ORDER BY v.n "
    "ON CONFLICT (idempotency_key) DO NOTHING"
).bindparams(bindparam("now", type_=UTCDateTime))
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
