from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

CUT = "cut"
RESTORE = "restore"
READ = "read"  # an on-demand reading (a manager's or resident's "read it now"): no relay write

PENDING = "pending"
DONE = "done"
EXPIRED = "expired"
CANCELLED = "cancelled"


class Command(SQLModel, table=True):
    """One cut, restore or on-demand read for one meter. A row first, frames later: created in
    the same transaction as its cause; only a relay state read back from the meter completes
    it. On a gateway restores go first, then cuts, then reads, then the routine poll."""

    # A meter's commands of an action with their times and state, from the index alone: the
    # restore that followed each payment (app/estate/indicators.py, payment to power).
    __table_args__ = (sa.Index("ix_command_meter_id_action_times", "meter_id", "action",
                               "created_at", "completed_at", "state"),)

    id: int | None = Field(default=None, primary_key=True)
    meter_id: int = Field(foreign_key="meter.id", index=True)
    action: str  # cut | restore | read
    state: str = Field(default=PENDING, index=True)
    reason: str = ""
    # Indexed, as `completed_at`: the indicators count a period's commands by these (app/estate/
    # indicators.py).
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    next_attempt_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    attempts: int = 0
    completed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)


class CommandAttempt(SQLModel, table=True):
    """The evidence of one try: what was sent, what came back, what the relay read."""

    __tablename__ = "command_attempt"

    id: int | None = Field(default=None, primary_key=True)
    command_id: int = Field(foreign_key="command.id", index=True)
    started_at: dt.datetime = Field(sa_type=UTCDateTime)
    finished_at: dt.datetime = Field(sa_type=UTCDateTime)
    outcome: str  # confirmed | mismatch | timeout | exception | connection
    exception_code: int | None = None
    relay_open: bool | None = None
    detail: str = ""
