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


class LedgerDay(SQLModel, table=True):
    """An account's ledger frozen for one local (China time) day (账日冻结), as the money's
    `DailyFrozen`: what the day's entries (by `created_at`) did to the account, and its own
    balance at the day's end, written once the day is over (`app.estate.freeze`).
    A row only for an account with entries that day; its balance carries to the days without
    one. All in fen:
    - `charged_fen`, `shared_fen`: billed in the day, its `charge` and its `share` entries
      (negated: positive when billed);
    - `net_fen`: the day's entries summed, emergency advances and their repayments left out
      (they move money lent, not the resident's own);
    - `own_fen`: the account's own balance at the day's end, the sum of all its entries but the
      `emergency_credit` ones created before the day ended (the balance less the advance
      outstanding): below zero, the account owes that much (arrears, 欠费).
    What the buildings' days (`BuildingDay`) are summed from, and what the days not frozen yet
    carry the balances from: a year is one row per account and day, not the ledger's ~24
    entries."""

    __tablename__ = "ledger_day"

    account_id: int = Field(foreign_key="account.id", primary_key=True)
    day: dt.date = Field(primary_key=True)
    charged_fen: int = Field(default=0, sa_type=sa.BigInteger)
    shared_fen: int = Field(default=0, sa_type=sa.BigInteger)
    net_fen: int = Field(default=0, sa_type=sa.BigInteger)
    own_fen: int = Field(default=0, sa_type=sa.BigInteger)

