"""/sandbox/outbox: what the messaging stand-ins received (SMS and WeChat messages), newest
first, as the resident's phone would show it; for the demo and the testers. Sandbox only."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from app.privacy import mask_phone
from app.resident.views import render
from payments.wechat_oauth import mask_openid
from standins import store
from standins.alipay_sandbox import BEIJING
from standins.sms import CHANNEL as SMS
from standins.wechat_messages import SUBSCRIBE, TEMPLATE

SHOWN = 200  # the newest this many
CHANNELS = {"sms": (SMS,), "wechat": (TEMPLATE, SUBSCRIBE)}


async def outbox_page(request: Request) -> Response:
    """Every message, or one channel's (?channel=sms|wechat); recipients masked."""
    asked = request.query_params.get("channel", "")
    channels = CHANNELS.get(asked)
    messages = await run_in_threadpool(store.messages, request.app.state.settings.var_dir,
                                       channels, newest_first=True, limit=SHOWN)
    rows = [{
        "at": m["at"].astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
        "channel": m["channel"],
        "recipient": mask_phone(m["recipient"]) if m["channel"] == SMS
        else mask_openid(m["recipient"]),
        "template_id": m["template_id"],
        "lines": m["text"].split("\n"),
        "link": m["link"] if m["link"].startswith(("https://", "http://")) else "",
    } for m in messages]
    return render(request, "sandbox/outbox.html", {
        "messages": rows, "channel": asked if channels else "", "shown": SHOWN})
