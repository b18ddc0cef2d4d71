"""`/healthz` (the process answers) and `/readyz` (what it needs is there), for a load
balancer, systemd or a person. `/readyz` answers JSON with each check, its figures and ages,
and 503 when one fails:
- the database answers, and its schema is at this code's head revision;
- a meter worker's heartbeat is fresh (within twice the lease time: a worker renews it every
  third of it), else nobody reads meters or restores power;
- the order, billing and message jobs each ended a sweep within three of their intervals (at
  least a minute, and for billing ten; the message jobs record a sweep every 20 s at most),
  wherever they run (`JobRun`), and the last did not fail.
It also reports the holiday calendar (`app.policy.arrangements.calendar_status`): until when it
is official, and from 60 days before that a warning to load next year's arrangement. That check
warns and never fails readiness: past the official years the statutory holidays are computed
and cuts go on."""

from __future__ import annotations

import asyncio
import datetime as dt

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.db import transaction, utcnow
from app.estate.models import WorkerHeartbeat
from app.jobs.runs import BILLING_JOBS, ORDER_JOBS, last_runs
from app.messages.jobs import MESSAGE_JOBS
from app.migrate import current_revision, head_revision
from app.policy.arrangements import calendar_status
from app.tariffs import CHINA_TZ


async def healthz(request: Request) -> Response:
    return Response("ok")


def _age(now: dt.datetime, then: dt.datetime | None) -> float | None:
    return None if then is None else round((now - then).total_seconds(), 1)


def _checks(engine, settings) -> dict:
    checks = {}
    try:
        with transaction(engine, read_only=True) as s:
            at = current_revision(s.connection())
            status = calendar_status(s, utcnow().astimezone(CHINA_TZ).date())
    except Exception as exc:  # the database does not answer: nothing else can be checked
        return {"database": {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}}
    checks["database"] = {"ok": True}
    head = head_revision()
    checks["migrations"] = {"ok": at == head, "at": at, "head": head}
    if at != head:  # the tables below may not be there yet
        return checks
    now = utcnow()
    with transaction(engine, read_only=True) as s:
        beat = s.execute(sa.select(sa.func.max(WorkerHeartbeat.seen_at))).scalar()
        runs = last_runs(s)
    fresh = dt.timedelta(seconds=settings.lease_ttl_s * 2)
    checks["worker"] = {"ok": beat is not None and now - beat <= fresh,
                        "age_s": _age(now, beat), "within_s": fresh.total_seconds()}
    for name, every in ((ORDER_JOBS, settings.order_jobs_every_s),
                        (BILLING_JOBS, settings.billing_jobs_every_s),
                        (MESSAGE_JOBS, settings.message_jobs_every_s)):
        within = max(3 * every, 600.0 if name == BILLING_JOBS else 60.0)
        run = runs.get(name)
        checks[name] = {
            "ok": run is not None and (now - run.last_run_at).total_seconds() <= within
            and not run.last_error,
            "age_s": _age(now, run.last_run_at if run else None), "within_s": within,
            "last_ok_age_s": _age(now, run.last_ok_at if run else None),
            "error": run.last_error if run else ""}
    if status is not None:
        checks["holiday_calendar"] = {"ok": True, "official_until": str(status.official_until),
                                      "days_left": status.days_left, "warning": status.warning}
    return checks


async def readyz(request: Request) -> Response:
    checks = await asyncio.to_thread(_checks, request.app.state.engine,
                                     request.app.state.settings)
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
