"""Engine, sessions and the two column types money and time need on both databases."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from decimal import Decimal
from itertools import chain
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

UTC = dt.timezone.utc
READ_ONLY = "feikong_read_only"


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_FOUR_PLACES = Decimal("0.0001")


class Decimal4(sa.types.TypeDecorator):
    """A decimal with four places (prices in yuan, areas in m²): NUMERIC(12, 4) on PostgreSQL, exact text on SQLite
    (whose NUMERIC goes through float)."""

    impl = sa.Numeric(12, 4)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(24))
        return dialect.type_descriptor(sa.Numeric(12, 4, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = Decimal(value).quantize(_FOUR_PLACES)
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(str(value)).quantize(_FOUR_PLACES)


def make_engine(url: str) -> Engine:
    """An engine for `url`. On SQLite: WAL, a busy timeout, and BEGIN IMMEDIATE for every
    transaction that may write, so two writers queue instead of failing on a lock upgrade;
    read-only transactions (see `transaction`) read a snapshot without queueing."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


# The DB-API drivers' own placeholders, by parameter style (sqlite3: "?", psycopg: "%s").
DRIVER_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def driver_rows(connection, statement, parameters=None) -> list[tuple]:
    """The rows of a Core select as the DB-API driver returns them: plain tuples, no result
    processing. For large reads of plain columns (integers, strings) where SQLAlchemy's rows
    cost more than the query (100,000 rows of three integers and a string: 0.11 s against
    0.26 s on SQLite). The statement is compiled and its parameters bound as usual; a selected
    column whose type processes results on this dialect (a Boolean on SQLite, a datetime,
    Decimal4) is refused with ValueError: select an integer or coerce it instead."""
    dialect = connection.dialect
    for column in statement.selected_columns:
        if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
            raise ValueError(f"driver_rows: column {column} would be processed "
                             f"({column.type!r} on {dialect.name})")
    result = connection.execute(statement, parameters or {})
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def driver_executemany(connection, sql: str, columns, rows: list[tuple]) -> None:
    """Run `sql` (each parameter written `{p}`) once per row, as one executemany straight to the
    DB-API driver, each value first processed as SQLAlchemy would for its column (`columns`, in
    the rows' order). For large batches of plain values: SQLAlchemy's own per-row parameter
    handling costs more than the database's work. sqlite3 and psycopg only (ValueError for a
    driver with another parameter style)."""
    placeholder = DRIVER_PLACEHOLDERS.get(connection.dialect.paramstyle)
    if placeholder is None:
        raise ValueError(f"no placeholder known for paramstyle {connection.dialect.paramstyle!r}")
    if not rows:
        return
    dialect = connection.dialect
    processors = [column.type.dialect_impl(dialect).bind_processor(dialect) for column in columns]
    if any(processors):
        rows = [tuple(value if process is None else process(value)
                      for process, value in zip(processors, row)) for row in rows]
    connection.exec_driver_sql(sql.format(p=placeholder), rows)


def driver_update_many(connection, table: str, columns: Sequence[str], key: str,
                       rows: list[tuple]) -> None:
    """`UPDATE table SET <columns> WHERE key = …` for each row: the new values of `columns`,
    then the key's value; plain values (ints, strings: nothing processed), straight to the
    driver, in the caller's transaction. The keys must be distinct (ValueError).

    On SQLite, statements of `UPDATE_ROWS` rows each, `UPDATE … FROM (VALUES …)`: one
    executemany pays a statement's start and end, and the driver's release of the GIL, per
    row (23 % fewer instructions for a day's meters and accounts). Other drivers: one
    executemany."""
    if not rows:
        return
    if len({row[-1] for row in rows}) != len(rows):
        raise ValueError(f"driver_update_many: a key of {table} given twice")
    placeholder = DRIVER_PLACEHOLDERS.get(connection.dialect.paramstyle)
    if placeholder is None:
        raise ValueError(f"no placeholder known for paramstyle {connection.dialect.paramstyle!r}")
    if placeholder != "?":
        sets = ", ".join(f"{column} = {placeholder}" for column in columns)
        connection.exec_driver_sql(f"UPDATE {table} SET {sets} WHERE {key} = {placeholder}",
                                   rows)
        return
    sets = ", ".join(f"{column} = v.column{i}" for i, column in enumerate(columns, 1))
    one = f"({', '.join(['?'] * (len(columns) + 1))})"
    head = f"UPDATE {table} SET {sets} FROM (VALUES "
    tail = f") AS v WHERE {table}.{key} = v.column{len(columns) + 1}"
    full = head + ", ".join([one] * UPDATE_ROWS) + tail
    for k in range(0, len(rows), UPDATE_ROWS):
        chunk = rows[k:k + UPDATE_ROWS]
        sql = full if len(chunk) == UPDATE_ROWS else head + ", ".join([one] * len(chunk)) + tail
        connection.exec_driver_sql(sql, tuple(chain.from_iterable(chunk)))


UPDATE_ROWS = 200  # rows per statement of driver_update_many on SQLite (50: +6 %, 1,000: +17 %)


_sqlite_locks: dict[str, threading.Lock] = {}
_in_write = threading.local()


@contextmanager
def _process_lock(engine: Engine):
    """On SQLite, write transactions of one process queue on a lock of ours: SQLite's own busy
    handler would make them sleep in steps of up to 100 ms. Other processes still meet
    SQLite's lock and busy timeout. A write transaction opened inside another one in the same
    thread could never get SQLite's lock: it fails at once instead of hanging."""
    if engine.dialect.name != "sqlite":
        yield
        return
    if getattr(_in_write, "active", False):
        raise RuntimeError("a write transaction inside another one: pass the session down")
    key = str(engine.url)
    lock = _sqlite_locks.get(key)
    if lock is None:
        lock = _sqlite_locks.setdefault(key, threading.Lock())
    with lock:
        _in_write.active = True
        try:
            yield
        finally:
            _in_write.active = False


@contextmanager
def transaction(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any exception.

    `read_only=True` promises not to write: on SQLite it then reads a WAL snapshot and waits
    for no writer."""
    if read_only:
        with Session(engine.execution_options(**{READ_ONLY: True}),
                     expire_on_commit=False) as session:
            with session.begin():
                yield session
            return
    with _process_lock(engine), Session(engine, expire_on_commit=False) as session:
        with session.begin():
            yield session


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


class local_date(sa.sql.functions.GenericFunction):
    """SQL: the local (China time, UTC+8 all year since 1991) date of a `UTCDateTime` column,
    to group or compare by local day in the database: `date(x, '+8 hours')` on SQLite (which
    keeps UTC text), `CAST(x AT TIME ZONE 'Asia/Shanghai' AS DATE)` on PostgreSQL."""

    type = sa.Date()
    name = "local_date"
    inherit_cache = True


@compiles(local_date, "sqlite")
def _local_date_sqlite(element, compiler, **kw):
    return f"date({compiler.process(element.clauses, **kw)}, '+8 hours')"


@compiles(local_date, "postgresql")
def _local_date_postgresql(element, compiler, **kw):
    return (f"CAST(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'Asia/Shanghai' "
            "AS DATE)")


class seconds_between(sa.sql.functions.GenericFunction):
    """SQL: `later` − `earlier` in seconds (a float; to the millisecond on SQLite), of two
    `UTCDateTime` columns: `(julianday(a) - julianday(b)) * 86400` on SQLite,
    `EXTRACT(EPOCH FROM a - b)` on PostgreSQL. For filters ("within a minute"), not money."""

    type = sa.Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element, compiler, **kw):
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_between_postgresql(element, compiler, **kw):
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"EXTRACT(EPOCH FROM ({later}) - ({earlier}))"
