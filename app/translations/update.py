"""Refresh translations/en/LC_MESSAGES/messages.po from the sources and en.txt.

    python -m app.translations.update

Extracts every _("…") from app/ and templates/ with Babel, fills in the English from en.txt
(one "中文<TAB>English" line each) and writes the .po file; lists strings still untranslated.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import write_po

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
METHODS = [("app/**.py", "python"), ("templates/**.html", "jinja2")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}


def main() -> int:
    english = dict(line.split("\t", 1) for line in (HERE / "en.txt").read_text("utf-8").splitlines()
                   if "\t" in line)
    catalog = Catalog(locale="en", project="feikong")
    missing = []
    for filename, lineno, message, _comments, _ctx in extract_from_dir(
            str(ROOT), METHODS, options_map=OPTIONS):
        if filename.startswith((".venv", "tests")):
            continue
        translated = english.get(message, "")
        if not translated:
            missing.append(message)
        catalog.add(message, translated, locations=[(filename, lineno)])
    out = HERE / "en" / "LC_MESSAGES" / "messages.po"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        write_po(f, catalog, width=100, sort_output=True)
    for message in sorted(set(missing)):
        print(f"untranslated: {message}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
