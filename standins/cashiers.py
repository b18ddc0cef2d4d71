"""The local sandbox cashiers: play Alipay's WAP cashier and WeChat Pay's H5 cashier when no
merchant keys are set.

Alipay: it checks our signed pay request like Alipay does (the trade exists at the stand-in of
Alipay from then on), lets the resident press 付款, then posts an Alipay-format notification
signed with the sandbox's own "Alipay" key to the notify URL named in the request, and sends the
browser back to the return URL. Alipay's server API (query, close, refund, bills) shares the
cashier's gateway.do: those requests go to the stand-in (`standins/alipay.py`).
WeChat Pay: our provider created the order on the stand-in of WeChat's API (mounted in this app);
the stand-in's `h5_url` opens this cashier, which marks the order paid on the stand-in, posts
WeChat's signed, encrypted notification to the order's notify_url and sends the browser back.
Notifications go out as the sandbox's notify behaviour says: normally, repeated, late or never
(`standins/delivery.py`). Neither touches our database: money moves only through the real
notify path.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from app.orders.providers import SANDBOX_ALIPAY_BILL_PATH
from app.resident.views import render
from standins.delivery import LATE, MODES, NotifyBehaviour
from standins.alipay import (FORM_HEADERS, SERVER_METHODS, AlipayBusinessError,
                                     bill_response, request_params)
from payments.base import NotificationRejected
from standins.wechat_pay_sandbox import StandinError

log = logging.getLogger(__name__)


def _sandbox(request: Request):
    return request.app.state.providers.sandbox_alipay


def _alipay_standin(request: Request):
    return request.app.state.providers.alipay_standin


def _notifier(request: Request):
    return request.app.state.sandbox_notifier


async def cashier(request: Request) -> Response:
    """Alipay's gateway.do: the WAP cashier for a browser, the server API for our provider."""
    sandbox = _sandbox(request)
    if sandbox is None:
        return Response("sandbox disabled: merchant keys are configured", status_code=404)
    params = await request_params(request)
    if params.get("method") in SERVER_METHODS:
        bills = request.app.state.settings.base_url + SANDBOX_ALIPAY_BILL_PATH
        status, body = await run_in_threadpool(_alipay_standin(request).handle, params, bills)
        return Response(body, status_code=status, media_type="application/json;charset=utf-8")
    query = request.url.query
    try:
        pay = sandbox.parse_pay_request(dict(parse_qsl(query, keep_blank_values=True)))
        _alipay_standin(request).open_trade(pay)
    except (NotificationRejected, AlipayBusinessError) as exc:
        return render(request, "sandbox/cashier.html", {"error": str(exc), "pay": None}, 400)
    return render(request, "sandbox/cashier.html", {"error": None, "pay": pay, "query": query})


async def alipay_bill(request: Request) -> Response:
    """A bill file behind one of the stand-in's download URLs (they live 30 s)."""
    standin = _alipay_standin(request)
    if standin is None:
        return Response("sandbox disabled", status_code=404)
    return bill_response(standin, request.path_params["token"])


async def pay(request: Request) -> Response:
    """The resident pays: the trade is paid at the stand-in, and its notification goes out as
    the notify behaviour (or the form's `notify` field) says."""
    sandbox = _sandbox(request)
    if sandbox is None:
        return Response("sandbox disabled", status_code=404)
    form = await request.form()
    query = form.get("query", "")
    standin = _alipay_standin(request)
    try:
        mode = _mode(form, request)
        pay_request = sandbox.parse_pay_request(dict(parse_qsl(query, keep_blank_values=True)))
        trade = standin.open_trade(pay_request)
        standin.pay(trade.out_trade_no, in_flight=mode == LATE)
    except (NotificationRejected, AlipayBusinessError, ValueError) as exc:
        return render(request, "sandbox/cashier.html", {"error": str(exc), "pay": None}, 400)
    no = pay_request.out_trade_no

    def build():
        if mode == LATE:
            standin.settle(no)
        return (pay_request.notify_url, dict(FORM_HEADERS),
                sandbox.encode_form(standin.notification_for(no)))

    if not await _notifier(request).send(build, mode=mode, label=no):
        return render(request, "sandbox/cashier.html",
                      {"error": "notify_failed", "pay": pay_request, "query": query}, 502)
    return RedirectResponse(pay_request.return_url or "/", status_code=303)


def _mode(form, request: Request) -> str:
    mode = str(form.get("notify") or _notifier(request).behaviour.mode)
    if mode not in MODES:
        raise ValueError(f"notify must be one of {', '.join(MODES)}")
    return mode


async def notify_behaviour(request: Request) -> Response:
    """GET: the notify behaviour; POST (form or JSON: mode, repeat, late_s): set it."""
    notifier = _notifier(request)
    if notifier is None:
        return Response("sandbox disabled", status_code=404)
    if request.method == "POST":
        try:
            if request.headers.get("content-type", "").startswith("application/json"):
                values = await request.json()
            else:
                values = dict(await request.form())
            late_s = values.get("late_s", notifier.behaviour.late_s)
            notifier.behaviour = NotifyBehaviour(
                mode=str(values.get("mode", NotifyBehaviour.mode)),
                repeat=int(values.get("repeat", NotifyBehaviour.repeat)),
                late_s=None if late_s in (None, "", "none") else float(late_s))
        except (TypeError, ValueError, AttributeError) as exc:  # AttributeError: not an object
            return JSONResponse({"error": str(exc)}, status_code=400)
    b = notifier.behaviour
    return JSONResponse({"mode": b.mode, "repeat": b.repeat, "late_s": b.late_s,
                         "held": len(notifier.held), "dropped": len(notifier.dropped)})


async def release_notifications(request: Request) -> Response:
    """Send every notification held back by the "late" behaviour, now."""
    notifier = _notifier(request)
    if notifier is None:
        return Response("sandbox disabled", status_code=404)
    return JSONResponse({"released": await run_in_threadpool(notifier.release)})


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


def _wechat_pays(standin, order, mode: str, openid: str | None = None) -> None:
    """The stand-in takes the payment (in flight, for the LATE behaviour); raises StandinError
    when WeChat would refuse it."""
    standin.pay(order.out_trade_no, openid=openid, in_flight=mode == LATE)
    if mode != LATE:
        standin.notification_for(order.out_trade_no)  # paid: it can be notified


async def _wechat_notifies(request: Request, standin, order, mode: str) -> bool:
    """WeChat's signed notification of the paid order to its notify_url, as the notify
    behaviour says; False when it could not be delivered."""
    no = order.out_trade_no

    def build():
        if mode == LATE:
            standin.settle(no)
        return (order.notify_url, *standin.notification_for(no))

    return await _notifier(request).send(build, mode=mode, label=no)


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
        mode = _mode(form, request)
        _wechat_pays(standin, order, mode)
    except (StandinError, ValueError) as exc:
        return _wechat_page(request, order, redirect_url, getattr(exc, "code", str(exc)), 400)
    if not await _wechat_notifies(request, standin, order, mode):
        return _wechat_page(request, order, redirect_url, "notify_failed", 502)
    back = safe_return_url(redirect_url, request.app.state.settings.base_url)
    if back is None:
        return _wechat_page(request, order, paid=True)
    return RedirectResponse(back, status_code=303)


# -- WeChat Pay JSAPI: the pay sheet WeChat's client opens for getBrandWCPayRequest ---------------

JSAPI_FIELDS = ("appId", "timeStamp", "nonceStr", "package", "signType", "paySign")


def _jsapi_sheet(request: Request, order, params: dict, error: str | None = None,
                 status_code: int = 200, paid: bool = False) -> Response:
    return render(request, "sandbox/wechat_cashier.html", {
        "order": order, "error": error, "paid": paid, "jsapi": params,
        "redirect_url": "", "back_url": None,
    }, status_code)


async def wechat_jsapi_sheet(request: Request) -> Response:
    """The sheet the sandbox bridge opens for getBrandWCPayRequest (?appId&timeStamp&nonceStr&
    package&signType&paySign): refused, as WeChat refuses it, unless the paySign verifies with
    the merchant public key and the package is a JSAPI prepay_id the stand-in issued."""
    standin = _wechat_standin(request)
    if standin is None:
        return Response("sandbox disabled: merchant keys are configured", status_code=404)
    params = {name: request.query_params.get(name, "") for name in JSAPI_FIELDS}
    try:
        order = standin.check_pay_request(params)
    except StandinError as exc:
        return _jsapi_sheet(request, None, params, f"{exc.code}: {exc.message}", 400)
    return _jsapi_sheet(request, order, params, paid=order.trade_state != "NOTPAY")


async def wechat_jsapi_pay(request: Request) -> Response:
    """The resident confirms in the sheet: the request is checked again (paySign included), the
    stand-in marks the order paid by the order's openid, and WeChat's signed notification goes to
    the order's notify_url (the only way money moves), as the notify behaviour says."""
    standin = _wechat_standin(request)
    if standin is None:
        return Response("sandbox disabled", status_code=404)
    form = await request.form()
    params = {name: str(form.get(name, "")) for name in JSAPI_FIELDS}
    try:
        order = standin.check_pay_request(params)
        mode = _mode(form, request)
        _wechat_pays(standin, order, mode, openid=order.openid)
    except StandinError as exc:
        return _jsapi_sheet(request, None, params, f"{exc.code}: {exc.message}", 400)
    except ValueError as exc:
        return _jsapi_sheet(request, order, params, str(exc), 400)
    if not await _wechat_notifies(request, standin, order, mode):
        return _jsapi_sheet(request, order, params, "notify_failed", 502)
    return _jsapi_sheet(request, order, params, paid=True)
