"""The prepaid agreement (预付费协议) a bound resident reads and accepts before using a household.

Its text is a UTF-8 file an operator may replace: FEIKONG_AGREEMENT_FILE, else the one shipped
here (`prepaid-agreement.md`). The file opens with a front matter block

    ---
    version: 2025-01
    title: 预付费用电协议
    ---

then the text: a line starting with "# " is a heading, every other non-empty line a paragraph
(no HTML: it is escaped when shown). Without a `version:` the file name's "-v<version>" suffix
is the version (`agreement-v3.md` → "3"), else the first 12 hex digits of the text's SHA-256, so
that any edit is a new version. A resident accepts a version; a new version is accepted again.
The file is read again whenever it changes (its modification time or size): replacing it needs
no restart.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FILE = Path(__file__).resolve().parent / "prepaid-agreement.md"
VERSION = re.compile(r"^[0-9A-Za-z._-]{1,40}$")
NAME_VERSION = re.compile(r"-v([0-9A-Za-z._]{1,40})$")


class AgreementError(ValueError):
    """The agreement file is missing, unreadable, empty or has a malformed version."""


@dataclass(frozen=True)
class Agreement:
    version: str
    title: str
    blocks: tuple[tuple[str, str], ...]  # ("h", heading) or ("p", paragraph), in order
    path: Path


def parse_agreement(text: str, path: Path) -> Agreement:
    front: dict[str, str] = {}
    lines = text.lstrip("\ufeff").splitlines()
    if lines and lines[0].strip() == "---":
        try:
            end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
        except StopIteration:
            raise AgreementError(f"{path}: the front matter has no closing ---") from None
        for line in lines[1:end]:
            key, sep, value = line.partition(":")
            if sep:
                front[key.strip().lower()] = value.strip()
        lines = lines[end + 1:]
    blocks = []
    for line in lines:
        line = line.strip()
        if line.startswith("# "):
            blocks.append(("h", line[2:].strip()))
        elif line:
            blocks.append(("p", line))
    if not blocks:
        raise AgreementError(f"{path}: the agreement has no text")
    version = front.get("version", "")
    if not version:
        named = NAME_VERSION.search(path.stem)
        version = (named.group(1) if named else
                   hashlib.sha256("\n".join(t for _, t in blocks).encode()).hexdigest()[:12])
    if not VERSION.match(version):
        raise AgreementError(f"{path}: version {version!r} is not 1-40 letters, digits, . _ -")
    return Agreement(version=version, title=front.get("title") or "预付费用电协议",
                     blocks=tuple(blocks), path=path)


_cache: dict[Path, tuple[tuple[int, int], Agreement]] = {}
_lock = threading.Lock()


def load_agreement(path: Path | None = None) -> Agreement:
    """The agreement in `path` (None: the shipped one), read again when the file changed.
    Raises AgreementError."""
    path = Path(path) if path else DEFAULT_FILE
    try:
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with _lock:
            cached = _cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgreementError(f"cannot read the agreement {path}: {exc}") from None
    agreement = parse_agreement(text, path)
    with _lock:
        _cache[path] = (stamp, agreement)
    return agreement
