"""Where accounts live and how their meters are reached: estate, building, account, gateway, meter."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from sqlmodel import Field, SQLModel

from app.db import Decimal4, UTCDateTime, utcnow


class Estate(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    manager_phone: str = ""  # shown on notices and pages: whom to call
    # The cut policy (app/policy): no cut between quiet_start and quiet_end, local time
    # (Asia/Shanghai, "HH:MM"; equal means no quiet hours), nor on a public holiday of
    # `holiday_calendar` ("cn": mainland China; "none": no holiday rule); only once the
    # balance-exhausted notice is `cut_notice_lead_h` hours old; and, where
    # `cut_requires_approval`, only after a manager approved it (停电审批).
    quiet_start: str = "20:00"
    quiet_end: str = "08:00"
    holiday_calendar: str = "cn"
    cut_notice_lead_h: int = 24
    cut_requires_approval: bool = False


class Building(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    estate_id: int = Field(foreign_key="estate.id", index=True)
    name: str


class Account(SQLModel, table=True):
    """One household's (or shop's) billing account (户号)."""

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, index=True)  # 户号, what the resident types
    building_id: int = Field(foreign_key="building.id", index=True)
    household: str  # e.g. "1-2-301"
    holder_name: str = ""
    holder_phone: str = ""
    floor_area_m2: Decimal = Field(default=Decimal("0"), sa_type=Decimal4)
    strategy: str = "residential"
    price_yuan_per_kwh: Decimal = Field(sa_type=Decimal4)  # flat tariff for now
    restore_threshold_fen: int = 0  # a payment restores when the balance rises above this
    cut_below_fen: int = 0  # cut when the balance falls below this (0: below zero)
    low_balance_threshold_fen: int = 1000  # a low-balance notice below this
    care_list: bool = False  # 爱心档案: never cut automatically; a manager task instead
    # Since when the balance has been below `cut_below_fen` (None: it is not): the exhaustion
    # episode its notice, approval and cut decisions belong to (set and cleared by the worker).
    exhausted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The recent daily rate (see app/notices/services.py), computed once per local day.
    daily_rate_fen: int = 0
    daily_rate_on: dt.date | None = None
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Gateway(SQLModel, table=True):
    """A Modbus TCP endpoint fronting one RS-485 bus of meters."""

    id: int | None = Field(default=None, primary_key=True)
    name: str
    host: str
    port: int
    # Row lease: the worker that polls this gateway, until when (see meters/leases.py).
    leased_by: str | None = None
    lease_expires_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class WorkerHeartbeat(SQLModel, table=True):
    """A worker process that is alive: it shares the gateways (see meters/leases.py)."""

    __tablename__ = "worker_heartbeat"

    worker_id: str = Field(primary_key=True)
    seen_at: dt.datetime = Field(sa_type=UTCDateTime)


class Meter(SQLModel, table=True):
    """A physical prepaid meter and what we last read from it.

    `relay_open`, `last_energy_wh` and `last_read_at` cache the newest reading; the readings
    themselves are rows of `Reading`. `billed_exact_e7` is the exact amount charged so far in
    units of 1e-7 yuan (an integer, so no database ever rounds it); `billed_fen` what was posted.
    """

    id: int | None = Field(default=None, primary_key=True)
    account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    gateway_id: int = Field(foreign_key="gateway.id", index=True)
    unit_id: int
    relay_open: bool | None = None
    last_energy_wh: int | None = Field(default=None, sa_type=sa.BigInteger)  # wraps at 2^32 × 10 Wh
    last_read_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    online: bool = True
    failures_in_row: int = 0  # the circuit breaker opens (online False) at a threshold
    max_power_w: int = 13_800  # what the breaker passes (60 A × 230 V): readings above are jumps
    billed_exact_e7: int = Field(default=0, sa_type=sa.BigInteger)
    billed_fen: int = Field(default=0, sa_type=sa.BigInteger)


class Reading(SQLModel, table=True):
    """One poll of one meter that changed something: energy or relay state."""

    id: int | None = Field(default=None, primary_key=True)
    meter_id: int = Field(foreign_key="meter.id", index=True)
    read_at: dt.datetime = Field(sa_type=UTCDateTime)
    energy_wh: int = Field(sa_type=sa.BigInteger)
    relay_open: bool
