from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

# Kinds of anomaly, each something a manager must look at.
COMMAND_EXPIRED = "command_expired"  # a cut or restore never confirmed before its expiry
METER_OFFLINE = "meter_offline"  # N failures in a row: the breaker opened
STATE_CHANGED_OFFLINE = "state_changed_offline"  # came back with a relay state we did not set
ENERGY_BACKWARDS = "energy_backwards"  # the register went down (reset, replaced, misread)
ENERGY_JUMP = "energy_jump"  # more than the breaker could pass in the interval
ENERGY_WHILE_OPEN = "energy_while_open"  # counted while the relay read open: bypass (窃电)?
BALANCE_MISMATCH = "balance_mismatch"  # the kept balance differs from the ledger's sum: no cut
LINE_LOSS = "line_loss"  # a building's main meter exceeds its meters by more than expected (线损)
GATEWAY_OFFLINE = "gateway_offline"  # a whole gateway unreachable or silent: its meters listed
# A cut the meter acknowledged and did not carry out, and why (the status it reported):
CUT_REFUSED_KEEP_POWER = "cut_refused_keep_power"  # in keep-power mode (保电)
RELAY_FAULT = "relay_fault"  # the meter reports its relay faulty
METER_TAMPER = "meter_tamper"  # the meter reports its cover open (开盖)


class Anomaly(SQLModel, table=True):
    """Something wrong that the system would not decide alone: kept until a manager resolves it.

    `energy_wh` and `from_wh`/`to_wh` carry the energy that was NOT charged because of it.
    `building_id` and `day` (a local date) name what a building's daily check judged (line
    loss): one anomaly of a kind per building and day (a UNIQUE index; other kinds leave both
    empty, and empty values never collide)."""

    __table_args__ = (sa.Index("uq_anomaly_kind_building_day", "kind", "building_id", "day",
                               unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)
    meter_id: int | None = Field(default=None, foreign_key="meter.id", index=True)
    account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    command_id: int | None = Field(default=None, foreign_key="command.id")
    building_id: int | None = Field(default=None, foreign_key="building.id")
    gateway_id: int | None = Field(default=None, foreign_key="gateway.id")  # gateway_offline
    day: dt.date | None = None
    detail: str = ""
    from_wh: int | None = Field(default=None, sa_type=sa.BigInteger)
    to_wh: int | None = Field(default=None, sa_type=sa.BigInteger)
    energy_wh: int | None = Field(default=None, sa_type=sa.BigInteger)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    resolved_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolution: str = ""
