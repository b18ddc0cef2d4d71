"""The subscribe button (订阅通知) on the bound resident's pages, and the JS-SDK config it needs.

Where the estate sends subscription notices (`Estate.wechat_messages == "subscribe"`), a notice
reaches a resident only for a template they granted on our page, with WeChat's JS-SDK open tag
`<wx-open-subscribe template="id1,id2,…">` (templates/resident/_subscribe.html). The account
page and the notices page show it to a bound resident known by an openid, when WeChat messages
are sent at all, and either inside WeChat (the real JS-SDK, https://res.wx.qq.com/open/js/
jweixin-1.6.0.js, allowed in that page's CSP only) or in the sandbox, where
static/sandbox-wx-jssdk.js plays `wx` and the open tag and grants at the WeChat stand-in
(standins/wechat_jssdk.py). static/wechat-subscribe.js asks `jsapi_config` for `wx.config`'s
signature and tells the resident what came of the tap ("已订阅提醒").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.messages.templates import TEMPLATE_NAMES
from app.messaging_setup import played
from app.resident.identity import resident_id
from app.resident.security import CSP_WITH_JSSDK
from messaging.base import DeliveryError

log = logging.getLogger(__name__)

JSAPI_CONFIG_PATH = "/wechat/jsapi-config"
JSSDK_URL = "https://res.wx.qq.com/open/js/jweixin-1.6.0.js"
MAX_URL = 1000
WECHAT_BROWSER = "micromessenger"  # as app.resident.views.in_wechat (which imports this module)


@dataclass(frozen=True)
class SubscribeOffer:
    templates: tuple[str, ...]  # the subscription notices' template ids, in the tag's order
    sandbox: bool  # the sandbox's bridge plays WeChat (else the real JS-SDK, inside WeChat)

    @property
    def template_attr(self) -> str:
        return ",".join(self.templates)


def subscribe_templates(settings) -> tuple[str, ...]:
    """The distinct, non-empty `wechat_subscribe_*` template ids of the notices we send."""
    ids: list[str] = []
    for name in dict.fromkeys(TEMPLATE_NAMES.values()):
        value = (getattr(settings, f"wechat_subscribe_{name}", "") or "").strip()
        if value and value not in ids:
            ids.append(value)
    return tuple(ids)


def subscribe_offer(request: Request, estate, openid: str | None) -> SubscribeOffer | None:
    """The button for this page, or None: only where the estate sends subscription notices, to
    a resident with an openid, when WeChat messages are sent, inside WeChat or in the sandbox
    (which plays WeChat in any browser)."""
    if estate is None or estate.wechat_messages != "subscribe" or not openid:
        return None
    if request.app.state.messengers.wechat is None:
        return None
    settings = request.app.state.settings
    templates = subscribe_templates(settings)
    if not templates:
        return None
    sandbox = played(settings)[1]
    in_wechat = WECHAT_BROWSER in request.headers.get("user-agent", "").lower()
    if not sandbox and not in_wechat:
        return None
    return SubscribeOffer(templates, sandbox)


def with_offer_csp(reply: Response, offer: SubscribeOffer | None) -> Response:
    """The real JS-SDK's origin allowed in this page's script-src (only where it is loaded)."""
    if offer is not None and not offer.sandbox:
        reply.headers["content-security-policy"] = CSP_WITH_JSSDK
    return reply


def page_url_ok(settings, url: str) -> bool:
    """A page of ours (under the public base URL), without its #fragment."""
    base = settings.base_url.rstrip("/") + "/"
    return (isinstance(url, str) and 0 < len(url) <= MAX_URL and url.startswith(base)
            and "#" not in url and not any(ord(ch) < 33 for ch in url))


async def jsapi_config(request: Request) -> Response:
    """GET ?url=<the page's address>: `wx.config`'s {appId, timestamp, nonceStr, signature}
    for that page. Only for a signed-in resident (else 404), only for a page of ours (else
    400); 404 when no WeChat messages are sent; 502 when WeChat cannot be reached or refuses."""
    messenger = request.app.state.messengers.wechat
    if resident_id(request) is None or messenger is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    url = request.query_params.get("url", "")
    if not page_url_ok(request.app.state.settings, url):
        return JSONResponse({"error": "url must be a page of this site, without #"},
                            status_code=400)
    try:
        config = await run_in_threadpool(messenger.jsapi_config, url)
    except DeliveryError as exc:
        log.warning("jsapi config failed: %s", exc)
        return JSONResponse({"error": "wechat unavailable"}, status_code=502)
    reply = JSONResponse(config)
    reply.headers["cache-control"] = "no-store"
    return reply
