"""The resident site's error pages: a styled page in the resident's language (zh-CN first) for
404, 405 and 500, with an h1 and a way back. The console (/manage) keeps its own replies, and
every machine-facing URL (the payment notify URLs, the stand-ins of the providers' APIs, health,
metrics, static files) or a client not asking for HTML keeps Starlette's plain replies: a
provider's retry logic reads the status, never our page."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from app import i18n
from app.i18n import gettext as _
from app.web.templating import get_page_of
from standins.paths import (SANDBOX_ALIPAY_BILL_PATH, SMS_STANDIN_PATH,
                            WECHAT_MESSAGES_STANDIN_PATH, WECHAT_OAUTH_STANDIN_PATH,
                            WECHAT_STANDIN_PATH)

log = logging.getLogger(__name__)

PLAIN_PREFIXES = ("/manage", "/notify/", "/healthz", "/readyz", "/metrics", "/static/",
                  WECHAT_STANDIN_PATH, WECHAT_OAUTH_STANDIN_PATH, WECHAT_MESSAGES_STANDIN_PATH,
                  SMS_STANDIN_PATH, SANDBOX_ALIPAY_BILL_PATH, "/sandbox/notif")


def wants_page(request: Request) -> bool:
    """A browser (it asks for HTML) on the resident site or a sandbox cashier, not a machine
    (Alipay's server API shares the cashier's gateway.do: its SDK asks for no HTML)."""
    return (not request.url.path.startswith(PLAIN_PREFIXES)
            and "text/html" in request.headers.get("accept", ""))


def _messages(status_code: int) -> tuple[str, str]:
    if status_code == 404:
        return (_("页面不存在"),
                _("您要打开的页面不存在或已经移走。请检查网址，或回到首页查询电费。"))
    if status_code == 405:
        return (_("这个页面不能这样打开"),
                _("请回到上一页重新操作。如果刚才付过款，到账后会显示在账户页。"))
    return (_("出错了，请稍后再试"),
            _("系统暂时出了问题，请稍后再试。如果刚才付过款，到账后会显示在账户页。"))


def error_page(request: Request, status_code: int, headers: dict | None = None) -> Response:
    title, message = _messages(status_code)
    back = get_page_of(request.app, request.url.path)
    back = back if status_code != 404 and back != request.url.path else None
    return request.app.state.templates.TemplateResponse(request, "resident/error.html", {
        "status_code": status_code, "title": title, "message": message, "back_url": back,
        "page_url": back,  # the language switch of a 405 goes to the page, not the form's URL
    }, status_code=status_code, headers=headers)


async def http_error(request: Request, exc: HTTPException) -> Response:
    """404 and 405 raised by the router (an unknown URL, a GET of a form's POST URL)."""
    if exc.status_code in (404, 405) and wants_page(request):
        return error_page(request, exc.status_code, exc.headers)
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    """An unhandled error: outside every middleware, so the language is picked here again.
    Starlette re-raises the exception after this reply, for the server's log."""
    if not wants_page(request):
        return PlainTextResponse("Internal Server Error", status_code=500)
    language = request.scope.get("feikong.language") or i18n.pick_language(
        request.query_params.get("lang"), request.cookies.get("lang"))
    token = i18n.current_language.set(language)
    try:
        page = error_page(request, 500)
        page.headers["Cache-Control"] = "no-store"
        return page
    except Exception:  # the page itself failed: the plain reply still goes out
        log.exception("the 500 page could not be rendered")
        return PlainTextResponse("Internal Server Error", status_code=500)
    finally:
        i18n.current_language.reset(token)
