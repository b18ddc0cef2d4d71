"""The residents' side of the web app: CSRF on every POST and the security headers.

- CSRF: the maintained `asgi-csrf` middleware, as the console (double-submit cookie: forms carry
  `csrftoken`, htmx the `x-csrftoken` header), with a cookie of its own (`feikong_csrf`, path
  /: the console's `csrftoken` lives at /manage and must not be shadowed) and its own signing
  secret. Every POST is checked, even one without cookies (`asgi-csrf` would let those through:
  a sign-in or a top-up forged from another site carries none). Not checked, as not ours to
  protect or not posted by our pages: the console (its own middleware), the payment providers'
  notifications (/notify/…), the sandbox's stand-ins of outside services (/sandbox/…), static
  files, health and metrics. A refusal is a 403 page in the resident's language.
- Headers on every page but the console's (which sets its own) and the stand-ins': a CSP
  without inline script or style, no framing (frame-ancestors 'none', X-Frame-Options), nosniff,
  Referrer-Policy strict-origin-when-cross-origin (WeChat Pay's H5 cashier checks the Referer's
  domain: `same-origin` would send none), no caching of pages (static files keep theirs); HSTS on
  every response when the public URL is HTTPS.
"""

from __future__ import annotations

from asgi_csrf import asgi_csrf
from starlette.requests import Request

CSRF_COOKIE = "feikong_csrf"
# Paths the residents' CSRF check and headers leave alone (prefixes).
NOT_RESIDENT = ("/manage", "/sandbox/", "/notify/")
UNCHECKED = NOT_RESIDENT + ("/static/", "/healthz", "/readyz", "/metrics")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; "
       "form-action 'self' https:; base-uri 'none'; object-src 'none'")
# A page that shows WeChat's subscribe button inside WeChat loads the JS-SDK from WeChat: that
# page's reply sets this CSP itself (app/resident/subscribe.py), every other keeps CSP.
CSP_WITH_JSSDK = CSP.replace("script-src 'self';",
                             "script-src 'self' https://res.wx.qq.com;")
HSTS = (b"strict-transport-security", b"max-age=31536000")


class _EveryPath:
    """`asgi-csrf`'s `always_protect`: it asks `path in always_protect`; every path is."""

    def __contains__(self, path: object) -> bool:
        return True


async def _refused(scope, send, error) -> None:
    """The CSRF refusal as a page (403) in the resident's language."""
    request = Request(scope)

    async def no_body():
        return {"type": "http.request", "body": b"", "more_body": False}

    from app.i18n import gettext as _

    from app.web.templating import get_page_of

    back = get_page_of(scope["app"], scope["path"])
    reply = scope["app"].state.templates.TemplateResponse(request, "resident/error.html", {
        "status_code": 403, "title": _("操作没有执行"),
        "message": _("页面已过期或来源不明。请返回上一页，刷新后再试。"),
        "back_url": back if back != scope["path"] else None, "page_url": back,
    }, status_code=403)
    await reply(scope, no_body, send)


OUTER = "feikong.outer_scope"
ROUTING_KEYS = ("route", "endpoint", "path_params")


class ResidentCsrf:
    """asgi-csrf hands the app a copy of the scope: what the router writes in it (the matched
    route, which `RequestTimer` labels its series with) is copied back to the caller's."""

    def __init__(self, app, secret_key: str, secure: bool) -> None:
        self.app = app
        self.checked = asgi_csrf(self._routed, cookie_name=CSRF_COOKIE,
                                 signing_secret=f"{secret_key}:resident-csrf",
                                 always_protect=_EveryPath(), cookie_secure=secure,
                                 send_csrf_failed=_refused)

    async def _routed(self, scope, receive, send):
        try:
            await self.app(scope, receive, send)
        finally:
            outer = scope.get(OUTER)
            if outer is not None:
                for key in ROUTING_KEYS:
                    if key in scope:
                        outer[key] = scope[key]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(UNCHECKED):
            await self.app(scope, receive, send)
        else:
            scope[OUTER] = scope
            try:
                await self.checked(scope, receive, send)
            finally:
                scope.pop(OUTER, None)


class ResidentSecurityHeaders:
    PAGE = [
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
    ]

    def __init__(self, app, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        resident = not path.startswith(NOT_RESIDENT)
        static = path.startswith("/static/")
        if not resident and not self.https:
            await self.app(scope, receive, send)
            return

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if resident:
                    headers += [h for h in self.PAGE if h[0] not in names]
                    if not static and b"cache-control" not in names:
                        headers.append((b"cache-control", b"no-store"))
                if self.https and HSTS[0] not in names:
                    headers.append(HSTS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
