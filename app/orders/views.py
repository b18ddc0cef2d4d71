"""The providers' notify URLs: parse, confirm, acknowledge."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from app.db import transaction
from app.orders.services import Refused, confirm_paid, record_refused
from payments.base import NotificationRejected

log = logging.getLogger(__name__)


def _reply(status_type_body: tuple[int, str, str]) -> Response:
    status, content_type, body = status_type_body
    return Response(body, status_code=status, media_type=content_type)


async def alipay_notify(request: Request) -> Response:
    """Alipay's asynchronous notification. Credits only a verified notification for a known
    order with our app id and the exact amount; anything else is refused ("failure") and kept
    in `refused_notification` for a person, with the ledger untouched."""
    provider = request.app.state.providers.alipay
    engine = request.app.state.engine
    body = await request.body()

    def handle() -> bool:
        try:
            notification = provider.parse_notify(request.headers, body)
        except NotificationRejected as exc:
            refuse(exc.reason, exc.message, "", body.decode("utf-8", "replace"))
            return False
        try:
            with transaction(engine) as session:
                result = confirm_paid(session, notification, app_id=provider.app_id)
        except Refused as exc:
            refuse(exc.reason, exc.detail, notification.out_trade_no, notification.raw)
            return False
        log.info("alipay notify %s: %s", notification.out_trade_no, result.outcome)
        return True

    def refuse(reason: str, detail: str, out_trade_no: str, payload) -> None:
        log.warning("alipay notify refused (%s): %s", reason, detail)
        with transaction(engine) as session:
            record_refused(session, channel="alipay", reason=reason, detail=detail,
                           out_trade_no=out_trade_no, payload=payload)

    accepted = await run_in_threadpool(handle)
    return _reply(provider.ack() if accepted else provider.failure())
