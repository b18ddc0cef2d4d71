"""`/healthz` (the process answers) and `/readyz` (what it needs is there), for a load
balancer, systemd or a person. `/readyz` answers JSON with each check and 503 when one fails:
the database answers, and its schema is at this code's head revision. It also reports the
holiday calendar (`app.policy.arrangements.calendar_status`): until when it is official, and
from 60 days before that a warning to load next year's arrangement. That check warns and never
fails readiness: past the official years the statutory holidays are computed and cuts go on.
(The worker's heartbeat and the jobs' last runs are for the operations issue.)"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.db import transaction, utcnow
from app.migrate import current_revision, head_revision
from app.policy.arrangements import calendar_status
from app.tariffs import CHINA_TZ


async def healthz(request: Request) -> Response:
    return Response("ok")


def _checks(engine) -> dict:
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
    if status is not None:
        checks["holiday_calendar"] = {"ok": True, "official_until": str(status.official_until),
                                      "days_left": status.days_left, "warning": status.warning}
    return checks


async def readyz(request: Request) -> Response:
    checks = await asyncio.to_thread(_checks, request.app.state.engine)
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
