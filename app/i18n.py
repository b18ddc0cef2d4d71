"""Chinese first, English available. Source strings are zh-CN; `translations/en/.../messages.po`
holds the English. Babel reads the .po file at start-up (no compile step); the language of the
current request lives in a context variable."""

from __future__ import annotations

import io
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LANGUAGES = ("zh", "en")
DEFAULT = "zh"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"

current_language: ContextVar[str] = ContextVar("current_language", default=DEFAULT)


@lru_cache
def catalogue(language: str) -> NullTranslations:
    po = TRANSLATIONS / language / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=language)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf)


def gettext(message: str) -> str:
    return catalogue(current_language.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return catalogue(current_language.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; translated where it is shown."""
    return message


def pick_language(query_lang: str | None, cookie_lang: str | None) -> str:
    for candidate in (query_lang, cookie_lang):
        if candidate in LANGUAGES:
            return candidate
    return DEFAULT
