"""Messages to residents outside the portal: a WeChat template message or subscription notice,
or an SMS. One row per message to one recipient, with its delivery's outcome and attempts."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

# Channels.
WECHAT_TEMPLATE = "wechat_template"  # /cgi-bin/message/template/send
WECHAT_SUBSCRIBE = "wechat_subscribe"  # /cgi-bin/message/subscribe/bizsend
SMS = "sms"

# States.
QUEUED = "queued"  # to be sent at `next_attempt_at` (a reminder waits for the messaging hours)
SENT = "sent"  # the provider accepted it
FAILED = "failed"  # given up (a permanent refusal, or out of attempts): shown to managers
SKIPPED = "skipped"  # not sent: reminders turned off, or no channel reaches the resident


class Message(SQLModel, table=True):
    """One message about a notice (`notice_id`) to one recipient (an openid or a phone)."""

    __tablename__ = "message"
    __table_args__ = (
        sa.Index("ix_message_status_next_attempt_at", "status", "next_attempt_at"),
        sa.Index("ix_message_account_id_created_at", "account_id", "created_at"),
        # no resident gets the same reminder twice in a day: "<kind>:<account>:<recipient>:<day>"
        sa.UniqueConstraint("dedupe_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    resident_id: int | None = Field(default=None, foreign_key="resident.id")
    notice_id: int | None = Field(default=None, foreign_key="notice.id")
    kind: str  # the notice's kind (app.notices.models)
    channel: str
    recipient: str  # openid or phone
    template: str = ""  # the provider's template id
    body: str = ""  # the parameters sent, as JSON
    status: str = QUEUED
    attempts: int = 0
    next_attempt_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str = ""
    provider_id: str = ""  # WeChat's msgid, the SMS serial number
    dedupe_key: str | None = None
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
