"""What the messaging stand-ins keep, shared by every process that serves or reads them: a small
SQLite file of their own, `var_dir/standins/standins.sqlite3` (never the app's database).

The web server that plays the SMS provider or WeChat and the worker or test that sends through
them may be different processes (`serve --processes`, a test against a live server): the outbox,
the failures asked for and WeChat's tokens, JS-SDK tickets, followers and subscription grants are rows here, so
each process sees the others' at once. Each call opens its own connection: safe from any thread.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path

FILE_NAME = "standins.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,          -- "sms" | "wechat_template" | "wechat_subscribe"
    at TEXT NOT NULL,               -- ISO 8601, UTC
    recipient TEXT NOT NULL,        -- the phone (11 digits) or the openid
    template_id TEXT NOT NULL,
    params TEXT NOT NULL,           -- JSON: the SMS parameters (list) or WeChat's data (object)
    text TEXT NOT NULL,             -- the message as the recipient reads it
    ref TEXT NOT NULL,              -- the provider's id: SMS SerialNo, WeChat msgid
    link TEXT NOT NULL DEFAULT ''   -- WeChat: the url / page the message opens
);
CREATE TABLE IF NOT EXISTS fault (
    channel TEXT PRIMARY KEY,       -- "sms" | "wechat"
    remaining INTEGER NOT NULL,
    permanent INTEGER NOT NULL,
    code TEXT
);
CREATE TABLE IF NOT EXISTS wechat_token (
    token TEXT PRIMARY KEY,
    appid TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS wechat_ticket (
    ticket TEXT PRIMARY KEY,        -- a JS-SDK jsapi_ticket handed out
    appid TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS wechat_follower (
    openid TEXT PRIMARY KEY,
    follows INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS wechat_grant (
    openid TEXT NOT NULL,
    template_id TEXT NOT NULL,
    remaining INTEGER,              -- NULL: refused (the resident turned it off)
    PRIMARY KEY (openid, template_id)
);
CREATE TABLE IF NOT EXISTS setting (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def path_of(var_dir: Path) -> Path:
    return Path(var_dir) / "standins" / FILE_NAME


@contextmanager
def connect(var_dir: Path, *, write: bool = False):
    """A connection in one transaction (BEGIN IMMEDIATE when `write`: read-modify-write is
    atomic across processes), committed on leaving, rolled back on an exception."""
    path = path_of(var_dir)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=30.0, isolation_level=None)) as conn:
        conn.row_factory = sqlite3.Row
        conn.executescript(SCHEMA)
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def record(var_dir: Path, *, channel: str, recipient: str, template_id: str, params,
           text: str, ref: str, link: str = "", at: datetime | None = None) -> None:
    """One message the stand-in accepted, in the outbox."""
    moment = (at or now_utc()).astimezone(timezone.utc).isoformat()
    with connect(var_dir, write=True) as conn:
        conn.execute(
            "INSERT INTO message (channel, at, recipient, template_id, params, text, ref, link)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (channel, moment, recipient, template_id, json.dumps(params, ensure_ascii=False),
             text, ref, link))


def messages(var_dir: Path, channels: tuple[str, ...] | None = None, *,
             newest_first: bool = False, limit: int | None = None) -> list[dict]:
    """The outbox: dicts of channel, at (aware datetime, UTC), recipient, template_id, params,
    text, ref, link; oldest first unless `newest_first`."""
    if not path_of(var_dir).exists():
        return []
    sql = "SELECT * FROM message"
    args: list = []
    if channels is not None:
        sql += " WHERE channel IN (%s)" % ",".join("?" * len(channels))
        args += list(channels)
    sql += " ORDER BY id DESC" if newest_first else " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    with connect(var_dir) as conn:
        rows = conn.execute(sql, args).fetchall()
    return [{"channel": r["channel"], "at": datetime.fromisoformat(r["at"]),
             "recipient": r["recipient"], "template_id": r["template_id"],
             "params": json.loads(r["params"]), "text": r["text"], "ref": r["ref"],
             "link": r["link"]} for r in rows]


def clear_messages(var_dir: Path, channels: tuple[str, ...]) -> None:
    if not path_of(var_dir).exists():
        return
    with connect(var_dir, write=True) as conn:
        conn.execute("DELETE FROM message WHERE channel IN (%s)" % ",".join("?" * len(channels)),
                     channels)


def set_fault(var_dir: Path, channel: str, n: int, *, permanent: bool,
              code: str | None = None) -> None:
    """The next `n` requests on `channel` that would have succeeded fail instead (0: none)."""
    if n < 0:
        raise ValueError("n must be 0 or more")
    with connect(var_dir, write=True) as conn:
        conn.execute("INSERT INTO fault (channel, remaining, permanent, code) VALUES (?, ?, ?, ?)"
                     " ON CONFLICT (channel) DO UPDATE SET remaining = excluded.remaining,"
                     " permanent = excluded.permanent, code = excluded.code",
                     (channel, n, int(permanent), code))


def take_fault(var_dir: Path, channel: str) -> tuple[bool, str | None] | None:
    """(permanent, code) if this request is to fail (one fewer to go), else None."""
    with connect(var_dir, write=True) as conn:
        row = conn.execute("SELECT remaining, permanent, code FROM fault WHERE channel = ?",
                           (channel,)).fetchone()
        if row is None or row["remaining"] <= 0:
            return None
        conn.execute("UPDATE fault SET remaining = remaining - 1 WHERE channel = ?", (channel,))
        return bool(row["permanent"]), row["code"]
