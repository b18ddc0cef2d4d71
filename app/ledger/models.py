from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

# Kinds of ledger entry.
TOPUP = "topup"
CHARGE = "charge"
SHARE = "share"
REFUND = "refund"
ADJUSTMENT = "adjustment"
EMERGENCY_CREDIT = "emergency_credit"
OPENING = "opening"


class LedgerEntry(SQLModel, table=True):
    """One signed movement of money on an account, in fen. Insert-only: a correction is a new
    entry. `idempotency_key` is unique, so the same cause can never post twice."""

    __tablename__ = "ledger_entry"
    # An account's entries by time (history, a day's or a month's charges) are an index range.
    __table_args__ = (sa.Index("ix_ledger_entry_account_id_created_at", "account_id",
                               "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    amount_fen: int = Field(sa_type=sa.BigInteger)
    kind: str
    idempotency_key: str = Field(unique=True)
    memo: str = ""
    energy_wh: int | None = Field(default=None, sa_type=sa.BigInteger)  # for charges
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class AccountBalance(SQLModel, table=True):
    """An account's ledger summed, kept by the database itself: a row is opened with the
    account and moved by every ledger entry, in the entry's own transaction, by triggers
    (migration 0009): `balance_fen` is the sum of the account's entries, `advance_fen` of its
    `emergency_credit` entries, `entry_count` their number. The same triggers refuse to update
    or delete a ledger entry. Nothing else writes it; `app.ledger.checks` proves it daily."""

    __tablename__ = "account_balance"

    account_id: int = Field(foreign_key="account.id", primary_key=True)
    balance_fen: int = Field(default=0, sa_type=sa.BigInteger)
    advance_fen: int = Field(default=0, sa_type=sa.BigInteger)
    entry_count: int = Field(default=0, sa_type=sa.BigInteger)
