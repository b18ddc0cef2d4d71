"""Running batch jobs in the background, never in a request: `run_batch_jobs` (started by
app/stack.py beside the order, billing and message jobs, in the one process that runs them)
claims the oldest queued job, runs it in a thread, and the next.

Exactly once, across restarts:
- A job is claimed in one transaction (FOR UPDATE SKIP LOCKED on PostgreSQL, so two processes
  never take the same job; SQLite has one writer at a time): `running`, with the claiming
  process's `runner` ("host:pid").
- Its work is done in steps, each in one transaction with the step's advance of the job's
  `done` (`Context.advance`): an UPDATE that moves `done` only if the job is still running in
  this process at the `done` this step started from. A step whose job was taken up meanwhile
  elsewhere changes nothing (rolled back whole), so no item is ever done twice, and after a
  crash `done` is exactly what was done.
- The items a job works through are fixed when it starts (`items`), so it resumes at `done`.
  An export writes nothing but its file and resumes from the start; an import is one
  transaction with its job's end, so it is imported whole or not at all.
- A job found `running` whose process is gone (its pid no longer alive on this host, or no
  heartbeat for `STALE_AFTER`: on another host) is taken up again (`queued`, `resumes` + 1) if
  its kind is `resumable` and it was not taken up `MAX_RESUMES` times already (a job that kills
  its process each time must not loop); otherwise it is marked `interrupted`, its `done`
  saying what was done (`recover`, at the runner's start and every `RECOVER_EVERY_S`).

Progress: `done`/`total` in the job's row, which the console's job page polls. Inside one long
transaction (the import), the progress is kept in this process's memory (`LIVE`) and, on
PostgreSQL, written from a second connection; on SQLite a second writer would wait for the
first, and the web process that shows the page is this one (SQLite: one process).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import socket
import threading
import time

import sqlalchemy as sa
from sqlmodel import Session, select

from app.batch.models import DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, BatchJob
from app.console.auth import Who
from app.batch.context import _TABLE, LIVE, Context, JobFailed, JobLost  # noqa: F401
from app.db import is_postgres, transaction, utcnow

log = logging.getLogger(__name__)

EVERY_S = 1.0
RECOVER_EVERY_S = 30.0
STALE_AFTER = dt.timedelta(minutes=10)
MAX_RESUMES = 3
_HERE: set[int] = set()  # the jobs running in this process (any `Runner`)


def runner_id() -> str:
    """This process: host and pid (read at each call: `serve --processes` forks)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def enqueue(session: Session, *, who: Who | None, kind: str, params: dict,
            building_ids: list[int] | None = None, estate_id: int | None = None) -> BatchJob:
    """A job of `kind` asked for by `who` (None: the command line, for `estate_id`), in the
    caller's transaction. The kind checks its parameters first (`app.batch.kinds`)."""
    job = BatchJob(estate_id=who.estate_id if who else estate_id,
                   manager_id=who.manager_id if who else None,
                   manager_name=who.name if who else "feikong", kind=kind,
                   params=json.dumps(params, ensure_ascii=False, sort_keys=True),
                   building_ids=",".join(str(b) for b in sorted(building_ids or [])))
    session.add(job)
    session.flush()
    return job


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _gone(job: BatchJob, now: dt.datetime) -> bool:
    """Whether the process running `job` is gone: on this host, its pid is not alive (or it is
    this process, which does not run it); elsewhere, no heartbeat for `STALE_AFTER`. A live
    pid with no heartbeat for six times as long is taken for a pid used again."""
    if job.id in _HERE:
        return False
    host, _, pid = job.runner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return True
        if _pid_alive(int(pid)):
            last = job.heartbeat_at or job.started_at or job.created_at
            return now - last > STALE_AFTER * 6
        return True
    last = job.heartbeat_at or job.started_at or job.created_at
    return now - last > STALE_AFTER


class Runner:
    """Claims and runs jobs in this process (one at a time), and takes up those whose process
    died."""

    def __init__(self, engine, settings) -> None:
        self.engine, self.settings = engine, settings
        self._recovered_at = 0.0
        self._lock = threading.Lock()

    def recover(self, now: dt.datetime | None = None) -> dict[int, str]:
        """Jobs left running by a process that is gone: queued again, or interrupted (see the
        module's doc). Returns {job id: new state}."""
        from app.batch.kinds import KINDS

        now = now or utcnow()
        changed: dict[int, str] = {}
        self._recovered_at = time.monotonic()
        with transaction(self.engine, read_only=True) as s:  # an idle look writes nothing
            running = list(s.exec(select(BatchJob).where(BatchJob.state == RUNNING)))
        if not any(_gone(job, now) for job in running):
            return changed
        with transaction(self.engine) as s:
            query = select(BatchJob).where(BatchJob.state == RUNNING).order_by(BatchJob.id)
            if is_postgres(self.engine):
                query = query.with_for_update(skip_locked=True)
            for job in s.exec(query):
                if not _gone(job, now):
                    continue
                kind = KINDS.get(job.kind)
                if kind is not None and kind.resumable and job.resumes < MAX_RESUMES:
                    log.warning("batch job %d (%s) left running by %s: taken up again at %d/%d",
                                job.id, job.kind, job.runner, 0 if kind.restarts else job.done,
                                job.total)
                    job.state, job.runner, job.resumes = QUEUED, "", job.resumes + 1
                    if kind.restarts:
                        job.done = 0
                else:
                    job.state, job.finished_at = INTERRUPTED, now
                    job.message = (f"进程中断，未再继续：已完成 {job.done}/{job.total}"
                                   if kind is None or kind.resumable else
                                   f"进程中断：已完成 {job.done}/{job.total}")
                    log.error("batch job %d (%s) interrupted at %d/%d", job.id, job.kind,
                              job.done, job.total)
                changed[job.id] = job.state
                s.add(job)
        return changed

    def claim(self) -> BatchJob | None:
        """The oldest queued job, now running in this process; None when none is queued (one
        read of the state index: an idle runner takes no write lock)."""
        with transaction(self.engine, read_only=True) as s:
            if s.exec(select(BatchJob.id).where(BatchJob.state == QUEUED).limit(1)).first() \
                    is None:
                return None
        with transaction(self.engine) as s:
            query = (select(BatchJob).where(BatchJob.state == QUEUED)
                     .order_by(BatchJob.created_at, BatchJob.id).limit(1))
            if is_postgres(self.engine):
                query = query.with_for_update(skip_locked=True)
            job = s.exec(query).first()
            if job is None:
                return None
            now = utcnow()
            job.state, job.runner, job.heartbeat_at = RUNNING, runner_id(), now
            job.started_at = job.started_at or now
            s.add(job)
            s.flush()
            _HERE.add(job.id)
            return job

    def run(self, job: BatchJob) -> str:
        """Run a claimed job to its end (or until it is lost); returns its state."""
        from app.batch.kinds import KINDS

        context = Context(self.engine, self.settings, job, job.runner)
        try:
            kind = KINDS.get(job.kind)
            if kind is None:
                raise JobFailed(f"没有这种任务：{job.kind}")
            kind.run(context)
            return DONE
        except JobLost:
            log.warning("batch job %d was taken up elsewhere; stopped here", job.id)
            return "lost"
        except Exception as exc:
            message = str(exc) if isinstance(exc, JobFailed) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, JobFailed):
                log.exception("batch job %d (%s) failed", job.id, job.kind)
            with transaction(self.engine) as s:
                s.execute(sa.update(_TABLE).where(
                    _TABLE.c.id == job.id, _TABLE.c.state == RUNNING,
                    _TABLE.c.runner == context.runner).values(
                    state=FAILED, message=message[:2000], finished_at=utcnow()))
            return FAILED
        finally:
            _HERE.discard(job.id)
            LIVE.pop(job.id, None)

    def sweep(self) -> bool:
        """Take up jobs left by a dead process (every `RECOVER_EVERY_S`), then run one queued
        job; True when one ran."""
        with self._lock:
            if time.monotonic() - self._recovered_at >= RECOVER_EVERY_S:
                self.recover()
            job = self.claim()
            if job is None:
                return False
            self.run(job)
            return True

    def run_pending(self) -> int:
        """Run every queued job (tests, the command line); returns how many ran."""
        count = 0
        while self.sweep():
            count += 1
        return count


async def run_batch_jobs(engine, settings, *, every_s: float = EVERY_S) -> None:
    """Run batch jobs until cancelled: jobs left by a dead process taken up at once, then
    queued jobs one after the other, looking for one every `every_s` seconds when idle."""
    runner = Runner(engine, settings)
    while True:
        try:
            ran = await asyncio.to_thread(runner.sweep)
        except Exception:
            log.exception("batch jobs: the sweep failed")
            ran = False
        if not ran:
            await asyncio.sleep(every_s)
