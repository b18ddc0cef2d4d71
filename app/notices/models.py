from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

PAYMENT_RECEIVED = "payment_received"
POWER_RESTORED = "power_restored"
POWER_CUT = "power_cut"
LOW_BALANCE = "low_balance"  # below the account's threshold
LESS_THAN_A_DAY = "less_than_a_day"  # one more day at the recent daily rate would exceed it
BALANCE_EXHAUSTED = "balance_exhausted"  # below the cut line: the notice a cut must wait for
EMERGENCY_CREDIT = "emergency_credit"  # 应急用电 taken: amount_fen is the advance


class Notice(SQLModel, table=True):
    """One message to a resident. `kind` picks the (translated) text; `amount_fen` fills it."""

    # An account's notices of a kind by time (the newest of each, the page's last few) are an
    # index range however many years of notices it has.
    __table_args__ = (sa.Index("ix_notice_account_id_kind_created_at", "account_id", "kind",
                               "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    kind: str
    amount_fen: int | None = None
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
