"""Batch jobs (批量任务): work a manager asked for that runs in the background, with its progress."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

# States.
QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"  # it ran and could not finish (the error in `message`); what was done stays
INTERRUPTED = "interrupted"  # its process died and it was not taken up again; `done` were done
STATES = (QUEUED, RUNNING, DONE, FAILED, INTERRUPTED)
ENDED = (DONE, FAILED, INTERRUPTED)


class BatchJob(SQLModel, table=True):
    """One batch job: who asked for what (`kind`, `params` as JSON), in which estate, for which
    buildings; its state, progress (`done` of `total` items) and failures (a JSON list of
    {"item", "reason"}, `failure_count` of them); when it was created, started, last showed life
    (`heartbeat_at`) and finished; which process runs it (`runner`, "host:pid"); how often it
    was taken up again after its process died (`resumes`); the items it works through, fixed
    when it starts (`items`, JSON), so that it resumes at `done`; and what it made (`message`,
    an export's `result_path` and its file name for the download)."""

    __tablename__ = "batch_job"
    __table_args__ = (sa.Index("ix_batch_job_state_created_at", "state", "created_at"),
                      sa.Index("ix_batch_job_estate_id_created_at", "estate_id", "created_at"))

    id: int | None = Field(default=None, primary_key=True)
    estate_id: int = Field(foreign_key="estate.id")
    manager_id: int | None = Field(default=None, foreign_key="manager.id")
    manager_name: str = ""
    kind: str
    params: str = "{}"
    building_ids: str = ""  # "1,2": the buildings it concerns ("" the whole estate)
    state: str = QUEUED
    done: int = 0
    total: int = 0
    failure_count: int = 0
    failures: str = "[]"
    items: str = ""
    message: str = ""
    result_path: str = ""
    result_name: str = ""
    runner: str = ""
    resumes: int = 0
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    heartbeat_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
