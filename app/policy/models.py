"""What the cut policy decided, what it handed to a person, and the approvals it waits for."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

# Outcomes of a cut decision.
CUT = "cut"  # a cut command was queued
WAIT = "wait"  # not now: `not_before` says when, where it can be known
TASK = "task"  # never automatically: a manager task instead
APPROVAL = "approval"  # the estate wants a manager's approval first (停电审批)
REFUSED = "refused"  # the policy cannot (or may no longer) decide: a person must
NONE = "none"  # the balance is not exhausted: nothing to decide (never recorded)

# Approval states.
PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"

# Kinds of manager task.
CARE_LIST_EXHAUSTED = "care_list_exhausted"  # 爱心档案 household out of money: call, visit, decide
MANUAL_CUT = "manual_cut"  # an account whose strategy is never cut automatically
CUT_UNDECIDED = "cut_undecided"  # the policy refused to decide (unknown holidays, bad settings)


class CutDecision(SQLModel, table=True):
    """One decision of the cut policy for one meter whose account is exhausted.

    Recorded when the decision changes, not at every poll: one row per (meter, reason) run
    within an exhaustion episode. `reason` is for people (zh), `code` for programs."""

    __tablename__ = "cut_decision"

    id: int | None = Field(default=None, primary_key=True)
    meter_id: int = Field(foreign_key="meter.id", index=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    decided_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    outcome: str  # cut | wait | task | approval | refused
    code: str
    reason: str
    not_before: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    balance_fen: int = Field(sa_type=sa.BigInteger)
    command_id: int | None = Field(default=None, foreign_key="command.id")
    # Where the holiday calendar's answer for the local date came from (app/policy/holidays.py):
    # "loaded" or "package" (an official arrangement), "computed" (by rule, not official),
    # "none" (an estate without a holiday rule); None where the decision did not look.
    calendar: str | None = None


class ManagerTask(SQLModel, table=True):
    """Something the system hands to a property manager instead of doing it itself."""

    __tablename__ = "manager_task"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)
    account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    meter_id: int | None = Field(default=None, foreign_key="meter.id", index=True)
    detail: str = ""
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    done_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    done_by: str = ""
    resolution: str = ""


class CutApproval(SQLModel, table=True):
    """A cut waiting for, or given, a manager's approval (停电审批), for one meter in one
    exhaustion episode of its account."""

    __tablename__ = "cut_approval"

    id: int | None = Field(default=None, primary_key=True)
    meter_id: int = Field(foreign_key="meter.id", index=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    state: str = Field(default=PENDING, index=True)  # pending | approved | rejected
    balance_fen: int = Field(sa_type=sa.BigInteger)  # when it was requested
    requested_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    decided_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: str = ""
    note: str = ""


class HolidayArrangement(SQLModel, table=True):
    """An official holiday arrangement of one year (国务院办公厅 节假日安排) loaded by an operator
    (`feikong holidays load`). The newest loaded for a (calendar, year) is the one in force;
    older ones stay for the record. Its days are `HolidayDay` rows."""

    __tablename__ = "holiday_arrangement"

    id: int | None = Field(default=None, primary_key=True)
    calendar: str = Field(default="cn", index=True)
    year: int = Field(index=True)
    source: str  # the notice it transcribes, as the file says
    file_name: str = ""
    sha256: str  # of the file's text: loading the same arrangement again changes nothing
    loaded_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    loaded_by: str = ""


class HolidayDay(SQLModel, table=True):
    """One day an arrangement lists: a day off (`rest`) or a weekend day worked (调休上班)."""

    __tablename__ = "holiday_day"

    id: int | None = Field(default=None, primary_key=True)
    arrangement_id: int = Field(foreign_key="holiday_arrangement.id", index=True)
    day: dt.date
    rest: bool
    name: str  # the holiday it belongs to (zh)
