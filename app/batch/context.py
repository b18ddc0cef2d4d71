"""What a job's kind is given to do its work (`Context`), and how it stops: the part of the
batch runner that the kinds (`app.batch.kinds`) use. The runner (`app.batch.runner`) claims,
recovers and runs jobs with it; the kinds never import the runner, so the arrows go one way
(runner → kinds → context)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, select

from app.batch.models import DONE, RUNNING, BatchJob
from app.console.auth import Who
from app.console.models import BUILDING_MANAGER, Manager, ManagerBuilding
from app.db import transaction, utcnow

MAX_FAILURES_KEPT = 1000  # reasons kept in the row (all are counted)
LIVE: dict[int, tuple[int, int]] = {}  # job id → (done, total), this process's running jobs
_TABLE = BatchJob.__table__


class JobLost(RuntimeError):
    """The job is no longer running in this process (taken up elsewhere): stop, change nothing."""


class JobFailed(RuntimeError):
    """A job that cannot go on: its message (zh) is kept on the job."""


def who_of(session: Session, job: BatchJob) -> Who | None:
    """The manager who asked for the job, as their scope is now (a building manager's buildings
    may have changed since); None for a job of the command line. JobFailed if they were disabled
    or moved to another estate meanwhile."""
    if job.manager_id is None:
        return None
    manager = session.get(Manager, job.manager_id)
    if manager is None or manager.disabled_at is not None or manager.estate_id != job.estate_id:
        raise JobFailed("提交任务的管理员已停用")
    buildings = None
    if manager.role == BUILDING_MANAGER:
        buildings = frozenset(session.exec(select(ManagerBuilding.building_id).where(
            ManagerBuilding.manager_id == manager.id)))
    return Who(manager.id, manager.name, manager.role, manager.estate_id, buildings, "")


@dataclass(frozen=True)
class Context:
    """What a kind's `run` is given: the job as claimed, and the means to move it on."""

    engine: object
    settings: object
    job: BatchJob
    runner: str

    @property
    def params(self) -> dict:
        return json.loads(self.job.params or "{}")

    @property
    def items(self) -> list | None:
        return json.loads(self.job.items) if self.job.items else None

    def guard(self, session: Session, *, expect: int | None, to: int, total: int | None = None,
              failures: list[dict] | None = None) -> None:
        """In `session`'s transaction: the job is still running in this process (and at `done`
        == `expect`, unless None); set `done` to `to` (with these failures added) and beat the
        heart. Raises JobLost otherwise, so the caller's transaction is rolled back."""
        values = {"done": to, "heartbeat_at": utcnow()}
        if total is not None:
            values["total"] = total
        if failures:
            row = session.execute(sa.select(_TABLE.c.failures).where(
                _TABLE.c.id == self.job.id)).scalar() or "[]"
            kept = json.loads(row)
            kept += failures[:max(0, MAX_FAILURES_KEPT - len(kept))]
            values["failures"] = json.dumps(kept, ensure_ascii=False)
            values["failure_count"] = _TABLE.c.failure_count + len(failures)
        where = [_TABLE.c.id == self.job.id, _TABLE.c.state == RUNNING,
                 _TABLE.c.runner == self.runner]
        if expect is not None:
            where.append(_TABLE.c.done == expect)
        moved = session.execute(sa.update(_TABLE).where(*where).values(**values),
                                execution_options={"preserve_rowcount": True}).rowcount
        if moved != 1:
            raise JobLost(f"job {self.job.id} is no longer running in {self.runner}")
        LIVE[self.job.id] = (to, total if total is not None else self.job.total)

    def set_items(self, session: Session, items: list) -> None:
        """Fix the items the job works through (when it first starts), in `session`'s
        transaction; the job's total is their number."""
        self.guard(session, expect=0, to=0, total=len(items))
        session.execute(sa.update(_TABLE).where(_TABLE.c.id == self.job.id).values(
            items=json.dumps(items)))
        self.job.items, self.job.total = json.dumps(items), len(items)

    def live(self, done: int, total: int, *, write: bool = True) -> None:
        """Progress shown while a step is under way (not what was done: see `guard`): in this
        process's memory, and in the job's row from its own short transaction when `write`
        (not from inside a SQLite write transaction, which a second writer would wait for)."""
        LIVE[self.job.id] = (done, total)
        if not write:
            return
        with transaction(self.engine) as s:
            s.execute(sa.update(_TABLE).where(_TABLE.c.id == self.job.id,
                                              _TABLE.c.state == RUNNING,
                                              _TABLE.c.runner == self.runner)
                      .values(done=done, total=total, heartbeat_at=utcnow()))

    def finish(self, session: Session, done: int, *, state: str = DONE, message: str = "",
               result_path: str = "", result_name: str = "", total: int | None = None) -> None:
        """The job's end, in the transaction of its last step (guarded as a step, `done`
        whatever it was)."""
        self.guard(session, expect=None, to=done, total=total)
        session.execute(sa.update(_TABLE).where(_TABLE.c.id == self.job.id).values(
            state=state, message=message[:2000], result_path=result_path,
            result_name=result_name, finished_at=utcnow()))
