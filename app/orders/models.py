from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

# Order statuses.
PENDING = "pending"
PAID = "paid"
CLOSED = "closed"  # past its life, closed at the provider: it can no longer be paid
PAID_AFTER_CLOSE = "paid_after_close"  # the provider said "paid" after we closed it: a manager

# Refund statuses.
REFUND_REQUESTED = "requested"  # recorded and debited; the provider has not accepted it yet
REFUND_SUBMITTED = "submitted"  # the provider accepted it; waiting for its notice or a query
REFUND_SUCCEEDED = "succeeded"  # the provider confirmed the money went back
REFUND_FAILED = "failed"  # the provider refused it; the debit was given back

# Why a manager refunds.
ACCOUNT_CLOSURE = "account_closure"
DECISION = "decision"
REFUND_REASONS = (ACCOUNT_CLOSURE, DECISION)

# Kinds of reconciliation difference.
MISSING_CREDIT = "missing_credit"  # the bill has a payment we did not credit
CREDIT_WITHOUT_BILL = "credit_without_bill"  # we credited a payment the bill does not have
AMOUNT_MISMATCH = "amount_mismatch"  # both have it, with different amounts
FEE_MISMATCH = "fee_mismatch"  # the provider's fee is not its rate of the amount
REFUND_NOT_CONFIRMED = "refund_not_confirmed"  # the bill has a refund we never saw confirmed
REFUND_WITHOUT_BILL = "refund_without_bill"  # a refund we saw confirmed is not in the bill


class Order(SQLModel, table=True):
    """One top-up attempt with a provider. Moves pending → paid exactly once; or pending →
    closed past its life, and closed → paid_after_close if the provider still says it was paid.

    `queried_at`/`query_count`: the last time, and how often, we asked the provider about it
    because no notification came. `reconciled_on`: the bill date whose line matched it."""

    __tablename__ = "pay_order"
    # the console's "payments today" and the day's payments of a channel: by status, then time
    __table_args__ = (sa.Index("ix_pay_order_status_paid_at", "status", "paid_at"),)

    id: int | None = Field(default=None, primary_key=True)
    out_trade_no: str = Field(unique=True, index=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    amount_fen: int
    channel: str
    status: str = Field(default=PENDING, index=True)
    provider_trade_no: str = ""
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    paid_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    closed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    queried_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    query_count: int = 0
    # When the provider, last asked, answered that it is not paid (cancelled in the cashier, or
    # abandoned): the resident's page says so instead of "confirming…". None: never so answered.
    unpaid_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    reconciled_on: dt.date | None = None


class RefusedNotification(SQLModel, table=True):
    """A payment notification we did not accept, kept for a person to review."""

    __tablename__ = "refused_notification"
    __table_args__ = (sa.Index("ix_refused_notification_channel_reason_received_at",
                               "channel", "reason", "received_at"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str
    reason: str
    detail: str = ""
    out_trade_no: str = ""
    payload: str = ""
    received_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RefusedCount(SQLModel, table=True):
    """How many notifications were refused per channel, reason and hour (UTC, its start): every
    one is counted; only the first `REFUSED_SAMPLE` of each hour are kept whole
    (`RefusedNotification`), so that a flood of forgeries cannot fill the disk."""

    __tablename__ = "refused_count"

    channel: str = Field(primary_key=True)
    reason: str = Field(primary_key=True)
    hour: dt.datetime = Field(sa_type=UTCDateTime, primary_key=True)
    count: int = Field(default=0, sa_type=sa.BigInteger)
    last_at: dt.datetime = Field(sa_type=UTCDateTime)


REFUSED_SAMPLE = 20  # refused notifications kept whole per channel, reason and hour


class Refund(SQLModel, table=True):
    """Money going back to a resident through the provider that took it: (part of) one paid
    order. Its ledger entry (kind refund, negative) is posted when it is requested, so the money
    cannot be spent meanwhile; if the provider refuses, a second entry gives it back.
    `out_refund_no` is ours (WeChat's out_refund_no, Alipay's out_request_no)."""

    __tablename__ = "refund"

    id: int | None = Field(default=None, primary_key=True)
    out_refund_no: str = Field(unique=True, index=True)
    order_id: int = Field(foreign_key="pay_order.id", index=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    channel: str
    amount_fen: int = Field(sa_type=sa.BigInteger)
    status: str = Field(default=REFUND_REQUESTED, index=True)
    reason: str  # account_closure | decision
    note: str = ""
    requested_by: str
    provider_refund_no: str = ""
    detail: str = ""  # the provider's last word, for people
    attempts: int = 0
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    submitted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    confirmed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    reconciled_on: dt.date | None = None


class ReconcileRun(SQLModel, table=True):
    """One channel's bill of one day, matched against our orders and refunds (对账)."""

    __tablename__ = "reconcile_run"
    __table_args__ = (sa.UniqueConstraint("bill_date", "channel", name="uq_reconcile_run_day"),)

    id: int | None = Field(default=None, primary_key=True)
    bill_date: dt.date
    channel: str
    lines: int = 0
    matched: int = 0
    differences: int = 0
    bill_amount_fen: int = Field(default=0, sa_type=sa.BigInteger)  # payments less refunds
    bill_fee_e5: int = Field(default=0, sa_type=sa.BigInteger)
    ran_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ReconcileDifference(SQLModel, table=True):
    """One difference between a provider's bill and our books, for a manager to resolve.

    Amounts in integer fen, fees in 1/100000 yuan; None where one side has nothing. Found
    again by a later run of the same day, it is not listed twice."""

    __tablename__ = "reconcile_difference"
    __table_args__ = (sa.UniqueConstraint("bill_date", "channel", "kind", "out_trade_no",
                                          "out_refund_no", name="uq_reconcile_difference"),)

    id: int | None = Field(default=None, primary_key=True)
    bill_date: dt.date = Field(index=True)
    channel: str
    kind: str
    out_trade_no: str
    out_refund_no: str = ""
    provider_trade_no: str = ""
    our_amount_fen: int | None = Field(default=None, sa_type=sa.BigInteger)
    bill_amount_fen: int | None = Field(default=None, sa_type=sa.BigInteger)
    expected_fee_e5: int | None = Field(default=None, sa_type=sa.BigInteger)
    bill_fee_e5: int | None = Field(default=None, sa_type=sa.BigInteger)
    detail: str = ""
    found_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    resolved_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_by: str = ""
    resolution: str = ""
