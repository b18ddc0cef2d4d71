"""The web application: resident pages, payment notify URLs, and the sandbox cashier."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import Mount, Route

from app import i18n
from app.db import make_engine
from app.logs import RequestIds
from app.messaging_setup import build_messengers
from app.orders.providers import (
    ALIPAY_NOTIFY_PATH,
    NOTIFY_PATHS,
    WECHAT_JSAPI_PAY_PATH,
    WECHAT_NOTIFY_PATH,
    WECHAT_OAUTH_CALLBACK_PATH,
    build_providers,
)
from app.console.views import console_mount
from app.orders.views import alipay_notify, wechat_notify
from app.resident import auth_views as residents
from app.resident import views as resident
from app.resident.security import ResidentCsrf, ResidentSecurityHeaders
from app.resident import pages as resident_pages
from app.resident.subscribe import JSAPI_CONFIG_PATH, jsapi_config
from app.settings import Settings, get_settings, use_settings
from app.web import errors, health
from app.web.lanes import NotifyLane
from app.web.limits import BodyLimit
from app.web.metrics import RequestTimer, metrics_view
from app.web.static import PageGZip, VersionedStaticFiles, favicon
from app.web.templating import make_templates, without_lang
from standins.delivery import SandboxNotifier
from standins.mounts import mount as mount_standins

LANG_COOKIE = "lang"


class LanguageMiddleware:
    """?lang=en|zh switches and remembers the language (a cookie); zh-CN otherwise. The `lang`
    item is taken out of the query the views see (a signed cashier query stays as signed; the
    page's switch link, `language_url`, puts it back). Plain ASGI: no task and no stream per
    request (BaseHTTPMiddleware costs both, on every notification)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        asked = connection.query_params.get("lang") if scope.get("query_string") else None
        language = i18n.pick_language(asked, connection.cookies.get(LANG_COOKIE))
        token = i18n.current_language.set(language)
        scope["feikong.language"] = language  # for the 500 page, rendered outside this
        if asked is not None or b"lang=" in scope.get("query_string", b""):
            # in place, as the router adds its route: outer middleware (metrics) reads the scope
            scope["query_string"] = without_lang(
                scope["query_string"].decode("latin-1")).encode("latin-1")
        if asked in i18n.LANGUAGES:
            cookie = Response()
            cookie.set_cookie(LANG_COOKIE, asked, max_age=365 * 86400, samesite="lax")
            set_cookie = [h for h in cookie.raw_headers if h[0] == b"set-cookie"]

            async def send_with_cookie(message):
                if message["type"] == "http.response.start":
                    message["headers"] = list(message.get("headers", [])) + set_cookie
                await send(message)
        else:
            send_with_cookie = send
        try:
            await self.app(scope, receive, send_with_cookie)
        finally:
            i18n.current_language.reset(token)


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> Starlette:
    settings = use_settings(settings) if settings else get_settings()
    providers = build_providers(settings)
    routes = [
        Route("/", resident.home, name="home"),
        Route("/a/{number}", resident.account, name="account"),
        Route("/a/{number}/_status", resident.account_status, name="account_status"),
        Route("/a/{number}/topup", resident.topup, methods=["POST"], name="topup"),
        Route("/a/{number}/emergency", resident.emergency, methods=["POST"], name="emergency"),
        Route("/a/{number}/reminders", resident.reminders, methods=["POST"], name="reminders"),
        Route("/a/{number}/agreement", residents.agreement, methods=["GET", "POST"],
              name="agreement"),
        Route("/a/{number}/unbind", residents.unbind, methods=["POST"], name="unbind"),
        Route("/login", residents.login, methods=["GET", "POST"], name="login"),
        Route("/login/code", residents.login_code, methods=["POST"], name="login_code"),
        Route("/login/wechat", residents.login_wechat, name="login_wechat"),
        Route("/logout", residents.logout, methods=["POST"], name="logout"),
        Route("/bind", residents.bind, name="bind"),
        Route("/bind/holder/code", residents.bind_holder_code, methods=["POST"],
              name="bind_holder_code"),
        Route("/bind/holder", residents.bind_holder, methods=["POST"], name="bind_holder"),
        Route("/bind/details", residents.bind_details, methods=["POST"], name="bind_details"),
        Route("/bind/confirm", residents.bind_confirm, methods=["POST"], name="bind_confirm"),
        Route("/a/{number}/bills", resident_pages.bills, name="bills"),
        Route("/a/{number}/bills/{month}", resident_pages.bill, name="bill"),
        Route("/a/{number}/history", resident_pages.history, name="history"),
        Route("/a/{number}/usage", resident_pages.usage, name="usage"),
        Route("/a/{number}/notices", resident_pages.notices, name="notices"),
        Route(JSAPI_CONFIG_PATH, jsapi_config, name="jsapi_config"),  # the subscribe button
        Route(ALIPAY_NOTIFY_PATH, alipay_notify, methods=["POST"], name="alipay_notify"),
        Route(WECHAT_NOTIFY_PATH, wechat_notify, methods=["POST"], name="wechat_notify"),
        Route(WECHAT_OAUTH_CALLBACK_PATH, resident.wechat_oauth_callback,
              name="wechat_oauth_callback"),  # WeChat's web OAuth comes back here
        Route(WECHAT_JSAPI_PAY_PATH + "/{out_trade_no}", resident.wechat_pay,
              name="wechat_pay"),  # JSAPI pay inside WeChat
        console_mount(settings),
        Route("/healthz", health.healthz, name="healthz"),
        Route("/readyz", health.readyz, name="readyz"),
        Route("/metrics", metrics_view, name="metrics"),
        Mount("/static", VersionedStaticFiles(), name="static"),
        Route("/favicon.ico", favicon, name="favicon"),
    ]
    sandbox = providers.sandbox_alipay is not None or providers.sandbox_wechat is not None
    if sandbox:  # no merchant keys: the stand-ins of every outside service are served
        routes += mount_standins(settings, providers)
    https = settings.base_url.startswith("https://")
    notify_routes = [r for r in routes if getattr(r, "path", None) in NOTIFY_PATHS.values()]
    app = Starlette(routes=routes, middleware=[Middleware(NotifyLane, routes=notify_routes,
                                                          https=https),
                                               Middleware(RequestIds), Middleware(RequestTimer),
                                               Middleware(BodyLimit),
                                               Middleware(ResidentSecurityHeaders, https=https),
                                               Middleware(PageGZip), Middleware(LanguageMiddleware),
                                               Middleware(ResidentCsrf, secret_key=settings.secret_key,
                                                          secure=https)],
                    exception_handlers={404: errors.http_error, 405: errors.http_error,
                                        500: errors.server_error})
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings.database_url)
    app.state.templates = make_templates()
    app.state.providers = providers
    app.state.messengers = build_messengers(settings)  # SMS and WeChat messages (or None each)
    app.state.sandbox_notifier = None
    if sandbox:
        # The stand-ins' refund notices go out as the sandbox's notify behaviour says.
        app.state.sandbox_notifier = notifier = SandboxNotifier()
        for standin in (providers.alipay_standin, providers.wechat_standin):
            if standin is not None:
                standin.deliver = notifier.deliver
    return app
