"""The local sandbox cashiers: play Alipay's WAP cashier and WeChat Pay's H5 cashier when no
merchant keys are set.

Alipay: it checks our signed pay request like Alipay does, lets the resident press 付款, then
posts an Alipay-format notification signed with the sandbox's own "Alipay" key to the notify URL
named in the request, and sends the browser back to the return URL.
WeChat Pay: our provider created the order on the stand-in of WeChat's API (mounted in this app);
the stand-in's `h5_url` opens this cashier, which marks the order paid on the stand-in, posts
WeChat's signed, encrypted notification to the order's notify_url and sends the browser back.
Neither touches our database: money moves only through the real notify path.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

import httpx
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.resident.views import render
from payments.base import NotificationRejected
from payments.wechat_sandbox import StandinError

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


# -- WeChat Pay H5 ------------------------------------------------------------------------------

def _wechat_standin(request: Request):
    return request.app.state.providers.wechat_standin


def safe_return_url(url: str, base_url: str) -> str | None:
    """`url` if it is one of our own pages (under `base_url`), else None. The redirect_url rides
    unsigned on the h5_url, as with WeChat: the cashier must not send a browser (or a link)
    wherever a crafted URL says."""
    if url == base_url or url.startswith(base_url + "/"):
        return url
    return None


def _wechat_page(request: Request, order, redirect_url: str = "", error: str | None = None,
                 status_code: int = 200, paid: bool = False) -> Response:
    return render(request, "sandbox/wechat_cashier.html", {
        "order": order, "error": error, "paid": paid, "redirect_url": redirect_url,
        "back_url": safe_return_url(redirect_url, request.app.state.settings.base_url),
    }, status_code)


async def wechat_cashier(request: Request) -> Response:
    """WeChat's H5 cashier, played: the page `h5_url` opens (?prepay_id=…&redirect_url=…)."""
    standin = _wechat_standin(request)
    if standin is None:
        return Response("sandbox disabled: merchant keys are configured", status_code=404)
    order = standin.order_by_prepay_id(request.query_params.get("prepay_id", ""))
    if order is None:
        return _wechat_page(request, None, error="unknown prepay_id", status_code=404)
    return _wechat_page(request, order, request.query_params.get("redirect_url", ""))


async def wechat_pay(request: Request) -> Response:
    """The resident pays: the stand-in marks the order paid, then WeChat's signed notification
    goes to the order's notify_url (our /notify/wechat: the only way money moves) and the browser
    back to redirect_url, if that is one of our pages."""
    standin = _wechat_standin(request)
    if standin is None:
        return Response("sandbox disabled", status_code=404)
    form = await request.form()
    redirect_url = str(form.get("redirect_url", ""))
    order = standin.order_by_prepay_id(str(form.get("prepay_id", "")))
    if order is None:
        return _wechat_page(request, None, error="unknown prepay_id", status_code=404)
    try:
        standin.pay(order.out_trade_no)
        headers, body = standin.notification_for(order.out_trade_no)
    except StandinError as exc:
        return _wechat_page(request, order, redirect_url, exc.code, 400)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            reply = await client.post(order.notify_url, content=body, headers=headers)
        delivered = reply.status_code in (200, 204)
    except httpx.HTTPError as exc:
        log.warning("sandbox could not deliver the WeChat notification: %s", exc)
        delivered = False
    if not delivered:
        return _wechat_page(request, order, redirect_url, "notify_failed", 502)
    back = safe_return_url(redirect_url, request.app.state.settings.base_url)
    if back is None:
        return _wechat_page(request, order, paid=True)
    return RedirectResponse(back, status_code=303)
