"""The providers' notify URLs: read the raw request, hand it to the notify desk
(`app.orders.desk`: verify, confirm, in batches), acknowledge."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from app import metrics
from app.orders.desk import NotifyDesk

log = logging.getLogger(__name__)


def _desk(app) -> NotifyDesk:
    """The app's notify desk on the running event loop (tests run apps on more than one)."""
    loop = asyncio.get_running_loop()
    desk = getattr(app.state, "notify_desk", None)
    if desk is None or desk[0] is not loop:
        desk = app.state.notify_desk = (loop, NotifyDesk(app.state.engine))
    return desk[1]


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
    headers = dict(request.headers)  # the whole set: WeChat's SDK needs every Wechatpay-* header
    body = await request.body()  # the raw bytes (at most `BODY_LIMITS`): WeChat signs them exactly
    try:
        accepted = await _desk(request.app).handle(channel, provider, headers, body)
    except SQLAlchemyError as exc:  # the database is down or refused: the provider must retry
        log.warning("%s notification not handled, the database failed: %s", channel,
                    str(exc).splitlines()[0][:200])
        metrics.NOTIFICATIONS.labels(channel, "error").inc()
        return _reply(provider.failure())
    metrics.NOTIFICATIONS.labels(channel, "accepted" if accepted else "refused").inc()
    return _reply(provider.ack() if accepted else provider.failure())
