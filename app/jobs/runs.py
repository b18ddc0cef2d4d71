"""Recording the background jobs' sweeps (`JobRun`) and reading them back for `/readyz`."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import transaction, utcnow
from app.jobs.models import JobRun

ORDER_JOBS, BILLING_JOBS = "order_jobs", "billing_jobs"
_TABLE = JobRun.__table__


def record_run(engine, name: str, error: BaseException | None = None,
               now: dt.datetime | None = None) -> None:
    """One sweep of job `name` ended (with `error`, or well); one statement, best effort: a
    database that cannot take it is the failure being reported elsewhere."""
    now = now or utcnow()
    values = {"last_run_at": now, "runs": 1,
              "last_error": "" if error is None else f"{type(error).__name__}: {error}"[:500]}
    if error is None:
        values["last_ok_at"] = now
    with transaction(engine) as s:
        upsert = (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(JobRun)
        update = {k: v for k, v in values.items() if k != "runs"}
        update["runs"] = _TABLE.c.runs + 1
        s.execute(upsert.values(name=name, **values)
                  .on_conflict_do_update(index_elements=["name"], set_=update))


def last_runs(session) -> dict[str, JobRun]:
    from sqlmodel import select

    return {row.name: row for row in session.exec(select(JobRun))}
