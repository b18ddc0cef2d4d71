"""`feikong backup DEST` and `feikong restore SRC`: a consistent copy of the whole database
while everything runs, and a database made from one (docs/deploy.md has the schedule).

- SQLite: the online backup API (`sqlite3.Connection.backup`): a snapshot of one moment, taken
  in one read transaction while the web and the worker go on writing; the copy is checked
  (`PRAGMA integrity_check`) before it is called a backup.
- PostgreSQL: `pg_dump --format=custom` (one transaction's snapshot) and `pg_restore`.

A restore goes into a new, empty database (or file) only: it never overwrites books that exist.
Afterwards every kept balance is proved against its ledger (`app.ledger.checks`)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app.db import make_engine, transaction


class BackupError(RuntimeError):
    """The backup or restore could not be made; the message says why, in plain words."""


@dataclass(frozen=True)
class Counted:
    accounts: int
    ledger_entries: int
    orders: int


def _sqlite_path(url: str) -> Path:
    return Path(make_url(url).database)


def _libpq(url: str) -> str:
    """The URL as libpq (pg_dump, pg_restore) reads it: no SQLAlchemy driver name."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install the PostgreSQL client (postgresql-client)")
    return found


def count(url: str) -> Counted:
    with transaction(make_engine(url), read_only=True) as s:
        def rows(table: str) -> int:
            return s.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
        return Counted(rows("account"), rows("ledger_entry"), rows("pay_order"))


def backup(url: str, dest: Path) -> Counted:
    """Copy the database at `url` to the file `dest` (refused if it exists); returns what the
    copy holds."""
    dest = Path(dest)
    if dest.exists():
        raise BackupError(f"{dest} exists already: a backup never overwrites a file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if make_url(url).get_backend_name() == "sqlite":
        partial = dest.with_name(dest.name + ".partial")
        source = sqlite3.connect(_sqlite_path(url), timeout=30)
        target = sqlite3.connect(partial)
        try:
            # in one step: a read transaction's snapshot (WAL: the writers go on meanwhile). In
            # steps, every write by another connection would restart the copy from the start.
            source.backup(target)
            problems = target.execute("PRAGMA integrity_check").fetchall()
        finally:
            target.close()
            source.close()
        if problems != [("ok",)]:
            partial.unlink(missing_ok=True)
            raise BackupError(f"the copy failed its integrity check: {problems[:3]}")
        partial.rename(dest)
        return count(f"sqlite:///{dest}")
    done = subprocess.run([_tool("pg_dump"), "--format=custom", "--no-owner", "--file",
                           str(dest), _libpq(url)], capture_output=True, text=True)
    if done.returncode != 0:
        dest.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {done.stderr.strip()[-500:]}")
    return count(url)


def restore(src: Path, url: str) -> Counted:
    """Make the database at `url` (a new SQLite file, or an empty PostgreSQL database) from the
    backup `src`; prove every balance against its ledger; returns what it holds."""
    from app.ledger.checks import verify_balances

    src = Path(src)
    if not src.is_file():
        raise BackupError(f"no backup at {src}")
    if make_url(url).get_backend_name() == "sqlite":
        target = _sqlite_path(url)
        if target.exists() and target.stat().st_size > 0:
            raise BackupError(f"{target} exists: restore into a new file, never over books")
        source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
    else:
        engine = make_engine(url)
        with engine.connect() as conn:
            tables = conn.execute(sa.text(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar()
        engine.dispose()
        if tables:
            raise BackupError("the database is not empty: restore into a new database "
                              "(createdb), never over books")
        done = subprocess.run([_tool("pg_restore"), "--no-owner", "--exit-on-error",
                               "--dbname", _libpq(url), str(src)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise BackupError(f"pg_restore failed: {done.stderr.strip()[-500:]}")
    engine = make_engine(url)
    checked = verify_balances(engine)
    engine.dispose()
    if checked.mismatches:
        raise BackupError(f"restored, but {len(checked.mismatches)} kept balances differ from "
                          "their ledger")
    return count(url)
