"""The Jinja2 environment: translations, and filters that format (never compute) money and time."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from jinja2 import pass_context
from starlette.requests import Request
from starlette.routing import Match
from starlette.templating import Jinja2Templates

from app import i18n
from app.money import fen_to_yuan_str
from app.privacy import mask_name, mask_phone
from app.settings import ROOT
from app.web.static import static_url

LOCAL_TZ = ZoneInfo("Asia/Shanghai")


def yuan(fen: int | None) -> str:
    """1234 → "12.34"; -500 → "-5.00"."""
    return "—" if fen is None else fen_to_yuan_str(fen)


def local_time(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "—" if value is None else value.astimezone(LOCAL_TZ).strftime(fmt)


LANG_PARAM = "lang"


def without_lang(query: str) -> str:
    """A raw query string less its `lang=` items, the rest untouched (a signed query stays as
    it was signed)."""
    return "&".join(item for item in query.split("&")
                    if item and item.partition("=")[0] != LANG_PARAM)


def get_page_of(app, path: str) -> str:
    """The nearest path at or above `path` that `app` answers by GET: the page a form posted
    from (POST /a/101/topup → /a/101), else "/"."""
    parts = path.rstrip("/").split("/")
    while len(parts) > 1:
        candidate = "/".join(parts)
        scope = {"type": "http", "path": candidate, "root_path": "", "method": "GET"}
        if any(route.matches(scope)[0] == Match.FULL for route in app.router.routes):
            return candidate
        parts.pop()
    return "/"


def page_url(request: Request, context: dict | None = None) -> str:
    """The GET URL of the page a response shows: the request's own path and query for GET and
    HEAD; after a POST, what the view or template set (`page_url` in the context, or
    `request.state.page_url`), else the page the form was posted from, without its query."""
    chosen = (context or {}).get("page_url") or getattr(request.state, "page_url", None)
    if chosen:
        return chosen
    if request.method in ("GET", "HEAD"):
        query = request.url.query
        return request.url.path + (f"?{query}" if query else "")
    return get_page_of(request.app, request.url.path)


@pass_context
def language_url(context, language: str) -> str:
    """The current page (see `page_url`) in `language`: path and query kept, `lang` replaced."""
    request = context.get("request")
    url = page_url(request, context) if request is not None else "/"
    path, _, query = url.partition("?")
    query = without_lang(query)
    return f"{path}?{query + '&' if query else ''}{LANG_PARAM}={language}"


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(ROOT / "templates"))
    env = templates.env
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)
    env.filters.update(yuan=yuan, local_time=local_time, mask_name=mask_name,
                       mask_phone=mask_phone)
    env.globals["current_language"] = i18n.current_language.get
    env.globals["language_url"] = language_url
    env.globals["static_url"] = static_url
    return templates
