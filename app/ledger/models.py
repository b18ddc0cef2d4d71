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

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    amount_fen: int = Field(sa_type=sa.BigInteger)
    kind: str
    idempotency_key: str = Field(unique=True)
    memo: str = ""
    energy_wh: int | None = Field(default=None, sa_type=sa.BigInteger)  # for charges
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
