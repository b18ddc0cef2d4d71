"""The providers' notify URLs: parse, confirm, acknowledge."""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from app.db import transaction
from app.orders.refunds import settle_refund_notice
from app.orders.services import (REFUND_NOTICE, Refused, confirm_paid, our_ids,
                                 record_refused)
from payments.base import NotificationRejected

log = logging.getLogger(__name__)

# How many notifications do their verification and database work at once, per process. On
# SQLite, one: its writes queue on one lock anyway, and every extra thread only contends for the
# GIL (bench.notify: 1 at a time credits ~30 % faster than 4, at 2.2-2.9 instead of 4.5 ms of
# CPU per notification). On PostgreSQL two, to overlap the round trips to the server (1, 3, 4
# and 8 measured slower, with `serve --processes 2` on 2 cores). Waiting
# notifications wait here, in the event loop, holding no thread: pages stay served.
NOTIFY_CONCURRENCY = {"sqlite": 1, "postgresql": 2}


def _slots(app) -> asyncio.Semaphore:
    """The app's NOTIFY_CONCURRENCY slots, on the running event loop."""
    loop = asyncio.get_running_loop()
    slots = getattr(app.state, "notify_slots", None)
    if slots is None or slots[0] is not loop:
        slots = app.state.notify_slots = (loop, asyncio.Semaphore(
            NOTIFY_CONCURRENCY.get(app.state.engine.dialect.name, 1)))
    return slots[1]


def _reply(status_type_body: tuple[int, str, str]) -> Response:
    status, content_type, body = status_type_body
    return Response(body, status_code=status, media_type=content_type)


async def alipay_notify(request: Request) -> Response:
    """Alipay's asynchronous notification (a signed form); acknowledged with "success"."""
    return await _notify(request, "alipay")


async def wechat_notify(request: Request) -> Response:
    """WeChat Pay's notification (signed headers, an encrypted JSON resource); acknowledged
    with HTTP 200."""
    return await _notify(request, "wechat")


async def _notify(request: Request, channel: str) -> Response:
    """Credits only a verified notification naming our ids, a known order of this channel and
    its exact amount; anything else gets the provider's failure reply (it will retry) and is kept
    in `refused_notification` for a person, with the ledger untouched. The failure reply says
    nothing about why: the reason is for us, not for whoever sent it. A refund notice settles the
    refund it names; a payment for an order we had closed is kept for a manager
    (`confirm_paid`): both are acknowledged."""
    try:
        provider = request.app.state.providers.by_channel(channel)
    except KeyError:
        return Response("not found", status_code=404)
    engine = request.app.state.engine
    headers = dict(request.headers)  # the whole set: WeChat's SDK needs every Wechatpay-* header
    body = await request.body()  # the raw bytes: WeChat's signature covers them exactly

    def handle() -> bool:
        try:
            notification = provider.parse_notify(headers, body)
        except NotificationRejected as exc:
            refuse(exc.reason, exc.message, "", body.decode("utf-8", "replace"))
            return False
        try:
            with transaction(engine) as session:
                result = confirm_paid(session, notification, **our_ids(provider))
                outcome = result.outcome
                if outcome == REFUND_NOTICE:
                    outcome += ": " + settle_refund_notice(session, notification, result.order)
        except Refused as exc:
            refuse(exc.reason, exc.detail, notification.out_trade_no, notification.raw)
            return False
        log.info("%s notify %s: %s", channel, notification.out_trade_no, outcome)
        return True

    def refuse(reason: str, detail: str, out_trade_no: str, payload) -> None:
        log.warning("%s notify refused (%s): %s", channel, reason, detail)
        with transaction(engine) as session:
            record_refused(session, channel=channel, reason=reason, detail=detail,
                           out_trade_no=out_trade_no, payload=payload)

    async with _slots(request.app):
        accepted = await run_in_threadpool(handle)
    return _reply(provider.ack() if accepted else provider.failure())
