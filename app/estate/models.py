"""Where accounts live and how their meters are reached: estate, building, account, gateway, meter."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from sqlmodel import Field, SQLModel

from app.db import Decimal4, UTCDateTime, utcnow
from app.tariffs import models as _tariff_tables  # noqa: F401  (account.tariff_id → tariff)


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
    # Reminders to residents (low balance, exhausted) go out only between these local times;
    # confirmations (payment, restore) at once (app/notices, the messages of issue 15).
    message_start: str = "08:00"
    message_end: str = "21:00"
    # How WeChat messages reach followers: "template" (模板消息) or "subscribe" (订阅通知, granted
    # by the resident on our page with the wx-open-subscribe button).
    wechat_messages: str = "template"


class Building(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    estate_id: int = Field(foreign_key="estate.id", index=True)
    name: str
    # 公摊: how the common-area meters' charge is split among the households (app/billing/
    # shares.py): "area" (by floor area, the default: 《民法典》 art. 283), "equal" (per
    # household) or "usage" (in proportion to each household's own consumption in the period).
    share_scheme: str = "area"
    # How often the common charge is shared (app/billing/jobs.py): "day" (each local day) or
    # "month" (each local calendar month). A building is shared one way, not both.
    share_period: str = "day"
    common_price_yuan_per_kwh: Decimal = Field(default=Decimal("0.5583"), sa_type=Decimal4)
    # The exact common-area charge shared so far (1e-7 yuan) and the fen posted for it: the one
    # rounding rule (app.money.post_increment) carries the sub-fen remainder period to period.
    shared_exact_e7: int = Field(default=0, sa_type=sa.BigInteger)
    shared_fen: int = Field(default=0, sa_type=sa.BigInteger)
    # 线损: the loss expected between the building's main meter (`Meter.building_main`) and its
    # households' and common-area meters, in % of the main meter's energy; a day above it is an
    # anomaly (app/estate/lineloss.py).
    line_loss_threshold_pct: Decimal = Field(default=Decimal("5"), sa_type=Decimal4)
    # 建筑面积 (m²), as the estate's workbook gives it; None when not given. The shares by area
    # use the households' own areas (`Account.floor_area_m2`); the console shows both.
    floor_area_m2: Decimal | None = Field(default=None, sa_type=Decimal4)


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
    price_yuan_per_kwh: Decimal = Field(sa_type=Decimal4)  # the flat price when no tariff_id
    # The account's tariff (app/tariffs/models.py; None: the flat price above). `tariff_uplift`:
    # the household qualifies for the tariff's 一户多人口 raise of every tier bound.
    tariff_id: int | None = Field(default=None, foreign_key="tariff.id", index=True)
    tariff_uplift: bool = False
    # The tiered cycle (年/月 阶梯): the local date its current cycle started and the Wh used in
    # it so far. An account opened mid-cycle starts with `cycle_wh = cycle_opening_wh`, the
    # figure carried over (e.g. from the utility's previous account for the household).
    cycle_start: dt.date | None = None
    cycle_wh: int = Field(default=0, sa_type=sa.BigInteger)
    cycle_opening_wh: int = Field(default=0, sa_type=sa.BigInteger)
    # 应急用电: the advance a cut household may take once a month (0: not offered); see
    # app/billing/emergency.py.
    emergency_credit_fen: int = 0
    # When the account stopped being billed (moved out); shares stop at this instant.
    closed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
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
    """A TCP endpoint fronting one RS-485 bus of meters: a Modbus TCP gateway, or a transparent
    serial server carrying Modbus-RTU or DL/T 645-2007 frames (`protocol`, meters/protocol.py)."""

    id: int | None = Field(default=None, primary_key=True)
    name: str
    host: str
    port: int
    protocol: str = Field(default="modbus_tcp",
                          sa_column_kwargs={"server_default": "modbus_tcp"})
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
    # The meter's address on its gateway's bus: a Modbus unit id (1–247) or a DL/T 645 address
    # (12 digits, kept as its number; meters.protocol.check_address / format_address).
    # (SQLite's INTEGER holds 64 bits already: the column migrated in place stays INTEGER there.)
    unit_id: int = Field(sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"))
    relay_open: bool | None = None
    # Armed for the button (允许合闸): a restore in close-allowed mode was confirmed and the
    # relay waits for the resident to press the meter's button; cleared when it closes.
    close_allowed: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # When `relay_open` was learned (a reading's time, or a command's read-back): a reading taken
    # before it, stored after it, does not put an older relay state back.
    relay_read_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_energy_wh: int | None = Field(default=None, sa_type=sa.BigInteger)  # wraps at 2^32 × 10 Wh
    last_read_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    online: bool = True
    failures_in_row: int = 0  # the circuit breaker opens (online False) at a threshold
    max_power_w: int = 13_800  # what the breaker passes (60 A × 230 V): readings above are jumps
    billed_exact_e7: int = Field(default=0, sa_type=sa.BigInteger)
    billed_fen: int = Field(default=0, sa_type=sa.BigInteger)
    # The charge accrued and not yet posted (app/billing/services.py): the register span it
    # covers, its energy, and the local hour it belongs to (an aware UTC instant); None/0 when
    # everything accrued is posted. Its money is `billed_exact_e7` less `billed_fen`.
    accrued_from_wh: int | None = Field(default=None, sa_type=sa.BigInteger)
    accrued_to_wh: int | None = Field(default=None, sa_type=sa.BigInteger)
    accrued_wh: int = Field(default=0, sa_type=sa.BigInteger)
    accrued_hour: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    accrued_lines: str | None = None  # what it was priced at (app.billing.pricing.accrue_lines)
    # A common-area meter (lift, corridor lights, pump) has no account: it belongs to a building
    # and its energy is shared among the building's households (app/billing/shares.py).
    building_id: int | None = Field(default=None, foreign_key="building.id", index=True)
    common_area: bool = False
    # A building's main meter (总表): no account, `building_id` set, not common-area; it measures
    # what the building draws, households and common areas together, and is compared with them
    # each day (线损, app/estate/lineloss.py). Charged to no one. Its `max_power_w` must be the
    # building's feeder's, or its steps are judged jumps and not counted.
    building_main: bool = False
    # The per-period energy registers (spike, peak, flat, valley; 0.01 kWh) at the last reading,
    # "s,p,f,v", when the meter has them: time-of-use tariffs price their differences.
    last_period_raw: str | None = None


class Reading(SQLModel, table=True):
    """One poll of one meter that changed something: energy or relay state. Raw: kept for
    `Settings.reading_retention_days` (judging a meter, the last few days), then dropped by the
    billing jobs (`app.billing.readings.drop_old_readings`); what lasts is rolled up as they are
    stored: `DailyFrozen` (with the 15-minute curve) and `RelayChange`."""

    # A meter's register at a time (common-area energy of a period, billing) is an index seek.
    __table_args__ = (sa.Index("ix_reading_meter_id_read_at", "meter_id", "read_at"),)

    id: int | None = Field(default=None, primary_key=True)
    meter_id: int = Field(foreign_key="meter.id", index=True)
    read_at: dt.datetime = Field(sa_type=UTCDateTime)
    energy_wh: int = Field(sa_type=sa.BigInteger)
    relay_open: bool


class DailyFrozen(SQLModel, table=True):
    """A meter's day (local, China time): a row for every day the meter was read at all, from
    its stored readings: the daily frozen registers (日冻结: the total and the per-period
    registers 尖峰平谷, in Wh; None where the meter has none) at the day's last reading whose
    register moved (or, on a day it did not move, at the day's first reading); the register at
    the day's first reading (`opening_wh`); the energy counted in the day that the worker judged
    plausible (`used_wh`: what is charged, for an account); and the 96-point load curve
    (96点曲线): that energy by quarter hour, 96 comma-separated Wh, empty for 0
    (`app.estate.rollup`). A meter read with its register unchanged all day has a row with
    `used_wh` 0; a day without a row: the meter was not read (before migration 0013's code, a
    day without a row could also be a day read without use). Kept for as long as the estate
    exists; raw readings are not (`Reading`)."""

    __tablename__ = "daily_frozen"
    # A day's rows of every meter (the day's figures, line loss, the freeze): an index range.
    __table_args__ = (sa.Index("ix_daily_frozen_day", "day"),)

    meter_id: int = Field(foreign_key="meter.id", primary_key=True)
    day: dt.date = Field(primary_key=True)
    opening_wh: int = Field(sa_type=sa.BigInteger)
    register_wh: int = Field(sa_type=sa.BigInteger)
    read_at: dt.datetime = Field(sa_type=UTCDateTime)  # the day's last reading
    used_wh: int = Field(default=0, sa_type=sa.BigInteger)
    curve: str = ""
    spike_wh: int | None = Field(default=None, sa_type=sa.BigInteger)
    peak_wh: int | None = Field(default=None, sa_type=sa.BigInteger)
    flat_wh: int | None = Field(default=None, sa_type=sa.BigInteger)
    valley_wh: int | None = Field(default=None, sa_type=sa.BigInteger)


class RelayChange(SQLModel, table=True):
    """Every change of a meter's relay as we learned it: from a reading, or from a command's
    read-back. Kept for as long as the estate exists."""

    __tablename__ = "relay_change"
    __table_args__ = (sa.Index("ix_relay_change_meter_id_at", "meter_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    meter_id: int = Field(foreign_key="meter.id")
    at: dt.datetime = Field(sa_type=UTCDateTime)
    relay_open: bool
    source: str  # "reading" | "command"


class ShareRun(SQLModel, table=True):
    """One apportionment of a building's common-area charge for one period: what was measured,
    what it cost, and how it was split (the shares themselves are ledger entries of kind
    "share"). Unique per building and period, so a period is shared once."""

    __tablename__ = "share_run"
    __table_args__ = (sa.UniqueConstraint("building_id", "period_start", "period_end"),)

    id: int | None = Field(default=None, primary_key=True)
    building_id: int = Field(foreign_key="building.id", index=True)
    period_start: dt.datetime = Field(sa_type=UTCDateTime)
    period_end: dt.datetime = Field(sa_type=UTCDateTime)
    scheme: str
    energy_wh: int = Field(sa_type=sa.BigInteger)
    exact_e7: int = Field(sa_type=sa.BigInteger)  # exact cost of the period, 1e-7 yuan
    charge_fen: int = Field(sa_type=sa.BigInteger)  # posted for it (the one rounding rule)
    households: int = 0
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class BuildingDay(SQLModel, table=True):
    """A building's figures of one local (China time) day, frozen once the day is over
    (`app.estate.freeze`), so that a month or a year of them is a few hundred rows, not the
    millions of meter days and ledger entries they come from (app/estate/indicators.py reads
    them; the days not frozen yet it computes as it would have frozen them):
    - `meters`: its meters that should have been read that day (households' meters whose
      account was open at some time that day, and its meters without an account: common-area
      and main); `meters_read`: those of them with that day's `DailyFrozen` row (read while
      the account was open);
    - `charged_fen`, `shared_fen`: its accounts' `charge` and `share` entries of the day
      (positive when billed), from their `LedgerDay` rows;
    - `arrears_start_fen`, `arrears_end_fen`: what its accounts owed at the day's start and
      end (their own balances below zero, `LedgerDay.own_fen`: the balance less the emergency
      advance outstanding), the end being the start moved by the day's rows."""

    __tablename__ = "building_day"

    building_id: int = Field(foreign_key="building.id", primary_key=True)
    day: dt.date = Field(primary_key=True)
    meters: int = 0
    meters_read: int = 0
    charged_fen: int = Field(default=0, sa_type=sa.BigInteger)
    shared_fen: int = Field(default=0, sa_type=sa.BigInteger)
    arrears_start_fen: int = Field(default=0, sa_type=sa.BigInteger)
    arrears_end_fen: int = Field(default=0, sa_type=sa.BigInteger)


class FrozenDay(SQLModel, table=True):
    """A local day whose `LedgerDay` and `BuildingDay` rows are written (`app.estate.freeze`):
    days are frozen in order, each once (the primary key), so the last one says how far they
    go; every day before it is frozen too."""

    __tablename__ = "frozen_day"

    day: dt.date = Field(primary_key=True)
    accounts: int = 0  # `LedgerDay` rows written: the accounts with entries that day
    frozen_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
