"""When each background job last ran, and how it went: what `/readyz` reads to say whether the
order and billing jobs are alive (they run in one process of `serve --processes N`, whichever;
any process answers for them)."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from app.db import UTCDateTime


class JobRun(SQLModel, table=True):
    __tablename__ = "job_run"

    name: str = Field(primary_key=True)  # "order_jobs", "billing_jobs"
    last_run_at: dt.datetime = Field(sa_type=UTCDateTime)  # the last sweep's end
    last_ok_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str = ""  # the last failed sweep's error ("" once one succeeds)
    runs: int = 0
