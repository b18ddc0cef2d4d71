"""The Jinja2 environment: translations, and filters that format (never compute) money and time."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from starlette.templating import Jinja2Templates

from app import i18n
from app.money import fen_to_yuan_str
from app.privacy import mask_name, mask_phone
from app.settings import ROOT

LOCAL_TZ = ZoneInfo("Asia/Shanghai")


def yuan(fen: int | None) -> str:
    """1234 → "12.34"; -500 → "-5.00"."""
    return "—" if fen is None else fen_to_yuan_str(fen)


def local_time(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "—" if value is None else value.astimezone(LOCAL_TZ).strftime(fmt)


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(ROOT / "templates"))
    env = templates.env
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)
    env.filters.update(yuan=yuan, local_time=local_time, mask_name=mask_name,
                       mask_phone=mask_phone)
    env.globals["current_language"] = i18n.current_language.get
    return templates
