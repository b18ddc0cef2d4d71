from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

PENDING = "pending"
PAID = "paid"
CLOSED = "closed"


class Order(SQLModel, table=True):
    """One top-up attempt with a provider. Moves pending → paid exactly once."""

    __tablename__ = "pay_order"

    id: int | None = Field(default=None, primary_key=True)
    out_trade_no: str = Field(unique=True, index=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    amount_fen: int
    channel: str
    status: str = PENDING
    provider_trade_no: str = ""
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    paid_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class RefusedNotification(SQLModel, table=True):
    """A payment notification we did not accept, kept for a person to review."""

    __tablename__ = "refused_notification"

    id: int | None = Field(default=None, primary_key=True)
    channel: str
    reason: str
    detail: str = ""
    out_trade_no: str = ""
    payload: str = ""
    received_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
