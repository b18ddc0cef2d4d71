"""The console's import page, /manage/import: an estate administrator downloads the workbook
template, uploads a filled workbook (or a CSV of one sheet), sees it checked first — every
problem by sheet, row and column, or what would be created and changed — and then imports it,
all through `app.estate.importing` as `feikong import` does, audited under their name.

Who: estate administrators only. A building manager's scope is some buildings, and a
workbook describes the estate (new buildings, gateways shared by buildings, accounts moved
between buildings): it is not theirs to import, so for them, and for finance, the page does
not exist (404, as every console object outside one's scope).

The check writes nothing; "导入" sends the same file again with the SHA-256 the check showed,
and, if it is that file, queues its import as a batch job (app/batch/kinds.py: `run_import`):
the browser goes to the job's page (/manage/jobs/<id>), whose progress bar follows the
import's steps; the file is checked again there, in the import's own transaction.
The upload is a multipart POST sent by htmx with the CSRF token in its `x-csrftoken` header
(`app.console.views.MultipartTokenInHeader`); its size is limited by `app.web.limits`."""

from __future__ import annotations

import datetime as dt
import hashlib
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.batch.kinds import keep_upload
from app.batch.runner import enqueue
from app.console import scope
from app.console.auth import COOKIE, who_is
from app.console.models import ROLE_ZH
from app.db import transaction
from app.estate.importing import import_file, template_bytes
from app.i18n import N_

PREFIX = "/manage"
LISTED = 200  # changes listed on the page (all are counted)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TEMPLATE_NAME = "小区资料导入模板.xlsx"


def _who(request: Request):
    idle = dt.timedelta(minutes=request.app.state.settings.console_idle_minutes)
    return who_is(request.app.state.engine, request.cookies.get(COOKIE), idle)


def _admin(request: Request):
    """The estate administrator behind the request; a redirect to log in; or 404."""
    who = _who(request)
    if who is None:
        target = request.url.path
        return None, RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)
    if not scope.may_administer(who):
        raise HTTPException(404, "没有找到")
    return who, None


def _render(request: Request, context: dict, status_code: int = 200) -> Response:
    context = {"csrftoken": request.scope["csrftoken"](), "prefix": PREFIX, "role_zh": ROLE_ZH,
               "listed": LISTED, **context}
    return request.app.state.templates.TemplateResponse(request, "console/import.html", context,
                                                        status_code=status_code)


async def template_download(request: Request) -> Response:
    who, redirect = _admin(request)
    if redirect:
        return redirect
    return Response(template_bytes(), media_type=XLSX, headers={
        "content-disposition": f"attachment; filename=estate-template.xlsx; "
                               f"filename*=UTF-8''{quote(TEMPLATE_NAME)}"})


async def import_page(request: Request) -> Response:
    who, redirect = _admin(request)
    if redirect:
        return redirect
    if request.method == "GET":
        return _render(request, {"who": who})
    form = await request.form()
    upload = form.get("file")
    data = await upload.read() if hasattr(upload, "read") else b""
    file_name = (getattr(upload, "filename", "") or "")[:200]
    action = str(form.get("action", "check"))
    context = {"who": who, "file_name": file_name}
    # htmx swaps only 2xx answers: a file with problems is a 200 to it, a 400 to anyone else
    failed = 200 if request.headers.get("hx-request") else 400
    if not data:
        return _render(request, {**context, "error": N_("请选择要导入的文件")}, failed)
    digest = hashlib.sha256(data).hexdigest()
    client = request.client.host if request.client else ""
    engine = request.app.state.engine
    if action == "apply":
        if str(form.get("sha256", "")) != digest:
            return _render(request, {**context, "error": N_(
                "文件与检查时的不同：请先检查这个文件")}, failed)
        # imported by a background job (app/batch/kinds.py: run_import), whose page shows
        # its progress; checked again there, in the import's own transaction
        path, _ = keep_upload(request.app.state.settings, data)
        with transaction(engine) as s:
            job = enqueue(s, who=who, kind="import", params={
                "path": path, "sha256": digest, "name": file_name, "client": client})
        target = f"{PREFIX}/jobs/{job.id}"
        if request.headers.get("hx-request"):
            return Response(status_code=200, headers={"hx-redirect": target})
        return RedirectResponse(target, status_code=303)
    with transaction(engine, read_only=True) as s:
        result = import_file(s, data, estate_id=who.estate_id, dry_run=True)
    return _render(request, {**context, "result": result, "checked": result.ok,
                             "sha256": digest, "lines": result.change_lines(LISTED)},
                   200 if result.ok else failed)
