"""The console's exports and batch jobs: /manage/exports (what can be exported, with month, day
and building pickers; small exports downloaded at once, the month's bills made by a background
job) and /manage/jobs (the jobs, a job's page whose progress bar htmx refreshes every second
while it runs, its result to download; reminders to a building's low households and a
building's change of tariff started here, bulk cut approvals from the approvals page).

Everything within the manager's scope (app/console/scope.py): a building outside it, or
another estate's job, or a building manager's look at a job that is not their own, is 404.
Each export is audited (`export.<kind>`: who, format, period, building, rows), a synchronous one
in the request's transaction, a job's when its file is written. Holders' names and phones are
whole for estate administrators and finance, masked for building managers (docs/console.md).
Services: app/reports (the exports), app/batch (the jobs)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from urllib.parse import quote

from sqlmodel import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from app.batch.kinds import KINDS as JOB_KINDS
from app.batch.kinds import PREPARE, KindRefused, describe, export_scope
from app.batch.models import DONE, ENDED, FAILED, INTERRUPTED, QUEUED, RUNNING, BatchJob
from app.batch.runner import LIVE, enqueue
from app.console import audit, scope
from app.console.auth import COOKIE, who_is
from app.console.models import ROLE_ZH
from app.db import transaction, utcnow
from app.i18n import N_
from app.reports import exports as reports
from app.reports.table import FORMATS, to_bytes
from app.tariffs import CHINA_TZ
from app.tariffs.models import StoredTariff
from app.web.ratelimit import request_client

PREFIX = "/manage"
JOBS_SHOWN = 50
SYNCHRONOUS = ("payments", "arrears", "commands", "anomalies", "audit")  # the bills: a job


def _who(request: Request):
    idle = dt.timedelta(minutes=request.app.state.settings.console_idle_minutes)
    return who_is(request.app.state.engine, request.cookies.get(COOKIE), idle)


def _login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)


def _not_found() -> HTTPException:
    return HTTPException(404, "没有找到")


STATE_NAMES = {QUEUED: N_("排队中"), RUNNING: N_("进行中"), DONE: N_("已完成"),
               FAILED: N_("失败"), INTERRUPTED: N_("已中断")}


def _render(request: Request, name: str, context: dict, status_code: int = 200) -> Response:
    context = {"csrftoken": request.scope["csrftoken"](), "prefix": PREFIX, "role_zh": ROLE_ZH,
               "state_names": STATE_NAMES, **context}
    return request.app.state.templates.TemplateResponse(request, name, context,
                                                        status_code=status_code)


def _today() -> dt.date:
    return utcnow().astimezone(CHINA_TZ).date()


def _last_month() -> str:
    return f"{(_today().replace(day=1) - dt.timedelta(days=1)):%Y-%m}"


def _attachment(name: str) -> dict:
    ascii_name = "export." + name.rsplit(".", 1)[-1]
    return {"content-disposition": f"attachment; filename={ascii_name}; "
                                   f"filename*=UTF-8''{quote(name)}"}


# --- exports -------------------------------------------------------------------------------------

async def exports_page(request: Request) -> Response:
    who = _who(request)
    if who is None:
        return _login(request)
    with transaction(request.app.state.engine, read_only=True) as s:
        buildings = {b.id: b.name for b in scope.buildings(s, who)}
    return _render(request, "console/exports.html", {
        "who": who, "kinds": reports.KINDS, "synchronous": SYNCHRONOUS, "buildings": buildings,
        "month": _last_month(), "this_month": f"{_today():%Y-%m}", "day": _today().isoformat(),
        "error": request.query_params.get("error", "")})


async def export_download(request: Request) -> Response:
    """A small export, written in the request and downloaded: /manage/exports/download with
    kind, format (xlsx, csv), month (or day) and building; audited with the file's rows."""
    who = _who(request)
    if who is None:
        return _login(request)
    kind = request.query_params.get("kind", "")
    fmt = request.query_params.get("format", "xlsx")
    if kind not in SYNCHRONOUS or fmt not in FORMATS:
        raise _not_found()
    params = {k: request.query_params.get(k, "") for k in ("month", "day", "building")}
    params = {k: v for k, v in params.items() if v}
    engine = request.app.state.engine
    with transaction(engine) as s:
        if params.get("building") and (not params["building"].isdigit() or scope.building(
                s, who, int(params["building"])) is None):
            raise _not_found()
        the_scope = export_scope(who, s, who.estate_id)
        try:
            report = reports.build(s, kind, the_scope, params)
        except reports.ExportRefused as exc:
            return RedirectResponse(f"{PREFIX}/exports?error={quote(str(exc))}", status_code=303)
        data = to_bytes(report, fmt)
        values = reports.audit_values(kind, params, fmt, report.rows_written)
        audit.record(s, who, values.pop("action"), client=request_client(request), **values)
    return Response(data, media_type=FORMATS[fmt],
                    headers=_attachment(reports.file_name(kind, params, fmt)))


# --- jobs ----------------------------------------------------------------------------------------

def _visible(s, who, job_id: int) -> BatchJob | None:
    """The job if the manager may see it: one of their estate's; for a building manager, only
    their own, and only while its buildings are theirs."""
    job = s.get(BatchJob, job_id)
    if job is None or job.estate_id != who.estate_id:
        return None
    if who.building_ids is not None:
        buildings = {int(b) for b in job.building_ids.split(",") if b}
        if job.manager_id != who.manager_id or not buildings or \
                not buildings <= set(who.building_ids):
            return None
    return job


def _jobs_query(who):
    query = select(BatchJob).where(BatchJob.estate_id == who.estate_id)
    if who.building_ids is not None:
        query = query.where(BatchJob.manager_id == who.manager_id)
    return query.order_by(BatchJob.created_at.desc(), BatchJob.id.desc()).limit(JOBS_SHOWN)


def _view(job: BatchJob, names: dict[int, str], tariffs: dict[int, str]) -> dict:
    """What the pages show of a job: progress (this process's live figures when newer)."""
    done, total = job.done, job.total
    live = LIVE.get(job.id)
    if live is not None and job.state not in ENDED:
        done, total = live
    percent = min(100, done * 100 // total) if total else (100 if job.state == DONE else 0)
    return {"job": job, "done": done, "total": total, "percent": percent,
            "title": JOB_KINDS[job.kind].title if job.kind in JOB_KINDS else job.kind,
            "what": describe(job.kind, json.loads(job.params or "{}"), names, tariffs),
            "failures": json.loads(job.failures or "[]"), "ended": job.state in ENDED}


async def jobs_page(request: Request) -> Response:
    who = _who(request)
    if who is None:
        return _login(request)
    with transaction(request.app.state.engine, read_only=True) as s:
        buildings = {b.id: b.name for b in scope.buildings(s, who)}
        tariffs = {t.id: t.name for t in s.exec(select(StoredTariff).order_by(StoredTariff.name))}
        jobs = [_view(job, buildings, tariffs) for job in s.exec(_jobs_query(who))]
    return _render(request, "console/jobs.html", {
        "who": who, "jobs": jobs, "buildings": buildings, "tariffs": tariffs,
        "may_remind": scope.may_decide_cuts(who), "may_administer": scope.may_administer(who),
        "error": request.query_params.get("error", "")})


async def start_job(request: Request) -> Response:
    """POST /manage/jobs/<kind>: the form checked (`app.batch.kinds.PREPARE`), the job queued
    and audited, then its page. A building or item outside the scope: 404, nothing queued."""
    who = _who(request)
    if who is None:
        return _login(request)
    kind = request.path_params["kind"]
    if kind not in PREPARE:
        raise _not_found()
    form = await request.form()
    values = {k: form.get(k) for k in form.keys()}
    values["ids"] = form.getlist("id")
    back = {"export": "/exports", "approve": "/approvals"}.get(kind, "/jobs")
    with transaction(request.app.state.engine) as s:
        try:
            params, buildings = PREPARE[kind](s, who, values)
        except LookupError:
            raise _not_found() from None
        except KindRefused as exc:
            return RedirectResponse(f"{PREFIX}{back}?error={quote(str(exc))}", status_code=303)
        job = enqueue(s, who=who, kind=kind, params=params, building_ids=buildings)
        audit.record(s, who, f"job.{kind}", object_type="batch_job", object_id=job.id,
                     after=job.params, client=request_client(request))
    return RedirectResponse(f"{PREFIX}/jobs/{job.id}", status_code=303)


async def job_page(request: Request) -> Response:
    who = _who(request)
    if who is None:
        return _login(request)
    fragment = request.url.path.endswith("/_progress")
    with transaction(request.app.state.engine, read_only=True) as s:
        job = _visible(s, who, request.path_params["job_id"])
        if job is None:
            raise _not_found()
        buildings = {b.id: b.name for b in scope.buildings(s, who)}
        tariffs = {t.id: t.name for t in s.exec(select(StoredTariff))}
        view = _view(job, buildings, tariffs)
    return _render(request, "console/_job.html" if fragment else "console/job.html",
                   {"who": who, "v": view, "may_download": job.manager_id == who.manager_id})


async def job_download(request: Request) -> Response:
    """An export job's file: for the manager who asked for it (what it shows depends on their
    role: another may export it themselves)."""
    who = _who(request)
    if who is None:
        return _login(request)
    with transaction(request.app.state.engine, read_only=True) as s:
        job = _visible(s, who, request.path_params["job_id"])
    if job is None or job.manager_id != who.manager_id or not job.result_path \
            or job.state != DONE:
        raise _not_found()
    path = Path(job.result_path)
    if not path.is_file():
        raise _not_found()
    fmt = path.suffix.lstrip(".")
    return FileResponse(path, media_type=FORMATS.get(fmt, "application/octet-stream"),
                        headers=_attachment(job.result_name or path.name))


def routes():
    from starlette.routing import Route

    return [
        Route("/exports", exports_page, name="console_exports"),
        Route("/exports/download", export_download, name="console_export"),
        Route("/jobs", jobs_page, name="console_jobs"),
        Route("/jobs/{job_id:int}", job_page, name="console_job"),
        Route("/jobs/{job_id:int}/_progress", job_page, name="console_job_progress"),
        Route("/jobs/{job_id:int}/download", job_download, name="console_job_download"),
        Route("/jobs/{kind}", start_job, methods=["POST"], name="console_start_job"),
    ]

