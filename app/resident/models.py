"""Who a resident is (a verified phone, a WeChat openid, or both), which households they are bound
to, the SMS codes that prove a phone, and the prepaid agreement each accepted."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

# How a binding was proved.
BY_HOLDER_PHONE = "holder_phone"  # the account's registered phone received the code
BY_HOLDER_DETAILS = "holder_details"  # 户号 + the holder's surname + the phone's last four digits
BY_MANAGER = "manager"  # bound by a property manager in the console

# What an SMS code is for.
CODE_LOGIN = "login"  # prove this phone: sign in (or add the phone to a WeChat resident)
CODE_BIND = "bind"  # the account's registered phone receives it: bind that account


class Resident(SQLModel, table=True):
    """A person using the portal: known by a phone proved by SMS code, by a WeChat openid (the
    official account's OAuth), or both once linked. Owns nothing by itself: what they may see is
    what their `ResidentAccount` rows bind."""

    __tablename__ = "resident"

    id: int | None = Field(default=None, primary_key=True)
    phone: str | None = Field(default=None, unique=True)  # 11 digits, proved by SMS code
    openid: str | None = Field(default=None, unique=True)  # for our official account's appid
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class ResidentAccount(SQLModel, table=True):
    """A resident bound to a household (户号). Several per resident (a family pays for parents);
    several residents per household. Deleted on unbinding."""

    __tablename__ = "resident_account"
    __table_args__ = (sa.Index("ix_resident_account_account_id", "account_id"),)

    resident_id: int = Field(foreign_key="resident.id", primary_key=True)
    account_id: int = Field(foreign_key="account.id", primary_key=True)
    bound_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    how: str = BY_HOLDER_PHONE
    reminders: bool = True  # low-balance reminders wanted (the cut notice goes regardless)
    notices_read_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class SmsCode(SQLModel, table=True):
    """A 6-digit code sent by SMS: valid 5 minutes, 5 tries, one per 60 s per phone. Only its
    hash is kept. `account_id` is the household a CODE_BIND code binds."""

    __tablename__ = "sms_code"
    __table_args__ = (sa.Index("ix_sms_code_phone_created_at", "phone", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    phone: str
    purpose: str
    account_id: int | None = Field(default=None, foreign_key="account.id")
    code_hash: str
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    tries: int = 0
    used_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class AgreementAcceptance(SQLModel, table=True):
    """A resident read and accepted a version of the prepaid agreement (预付费协议) for a
    household, at a time, from an address. Never updated."""

    __tablename__ = "agreement_acceptance"
    __table_args__ = (sa.UniqueConstraint("resident_id", "account_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", index=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    version: str
    accepted_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    client: str = ""
