"""The local sandbox cashier: plays Alipay's WAP cashier when no merchant keys are set.

It checks our signed pay request like Alipay does, lets the resident press 付款, then posts an
Alipay-format notification signed with the sandbox's own "Alipay" key to the notify URL named
in the request, and sends the browser back to the return URL. It never touches our database:
money moves only through the real notify path.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

import httpx
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.resident.views import render
from payments.base import NotificationRejected

log = logging.getLogger(__name__)


def _sandbox(request: Request):
    return request.app.state.providers.sandbox_alipay


async def cashier(request: Request) -> Response:
    sandbox = _sandbox(request)
    if sandbox is None:
        return Response("sandbox disabled: merchant keys are configured", status_code=404)
    query = request.url.query
    try:
        pay = sandbox.parse_pay_request(dict(parse_qsl(query, keep_blank_values=True)))
    except NotificationRejected as exc:
        return render(request, "sandbox/cashier.html", {"error": str(exc), "pay": None}, 400)
    return render(request, "sandbox/cashier.html", {"error": None, "pay": pay, "query": query})


async def pay(request: Request) -> Response:
    sandbox = _sandbox(request)
    if sandbox is None:
        return Response("sandbox disabled", status_code=404)
    form = await request.form()
    query = form.get("query", "")
    try:
        pay_request = sandbox.parse_pay_request(dict(parse_qsl(query, keep_blank_values=True)))
    except NotificationRejected as exc:
        return render(request, "sandbox/cashier.html", {"error": str(exc), "pay": None}, 400)
    notification = sandbox.build_notification(pay_request)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            reply = await client.post(
                pay_request.notify_url, content=sandbox.encode_form(notification),
                headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        delivered = reply.text.strip() == "success"
    except httpx.HTTPError as exc:
        log.warning("sandbox could not deliver the notification: %s", exc)
        delivered = False
    if not delivered:
        return render(request, "sandbox/cashier.html",
                      {"error": "notify_failed", "pay": pay_request, "query": query}, 502)
    return RedirectResponse(pay_request.return_url or "/", status_code=303)
