"""Readings rolled up as they are stored, into what lasts (app/estate/models.py): each meter's
days (`DailyFrozen`: the daily frozen registers and the 96-point load curve; a row for every day
the meter was read, its register moved or not: `Rollup.seen`) and its relay changes
(`RelayChange`). Raw readings are dropped after the retention period
(`drop_old_readings`); bills, shares, charts and the console read these.

`Rollup` gathers one batch's readings (several of a meter in one day merge into one row) and
writes them with one read of the days already stored and one executemany each of inserts and
updates. The worker holds the batch's meter rows (FOR UPDATE on PostgreSQL; SQLite has one
writer), so no one else writes those days meanwhile.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from app.db import driver_executemany, transaction
from app.estate.models import DailyFrozen, Meter, Reading, RelayChange
from app.tariffs import CHINA_TZ

QUARTERS = 96  # a day's points: one every 15 minutes
READING, COMMAND = "reading", "command"  # where a relay change was learned

_DAILY, _RELAY = DailyFrozen.__table__, RelayChange.__table__


def day_and_quarter(moment: dt.datetime) -> tuple[dt.date, int]:
    """The local (China time) date of `moment` and its quarter hour (0–95)."""
    local = moment.astimezone(CHINA_TZ)
    return local.date(), (local.hour * 60 + local.minute) // 15


def parse_curve(text: str) -> list[int]:
    """A stored curve as 96 Wh (empty text: nothing used)."""
    if not text:
        return [0] * QUARTERS
    return [int(x) if x else 0 for x in text.split(",")]


def format_curve(points: list[int]) -> str:
    """96 Wh as stored: comma-separated, 0 written as nothing (most quarters of a night)."""
    return ",".join(str(x) if x else "" for x in points)


@dataclass
class _Day:
    opening_wh: int
    register_wh: int
    read_at: dt.datetime
    used_wh: int
    curve: list[int]
    periods: list  # spike, peak, flat, valley Wh (None each: not read)
    first_at: dt.datetime
    seen_only: bool = False  # only readings whose register did not move: a stored day stays


@dataclass
class Rollup:
    """The rows one batch of stored readings adds to the days and the relay log."""

    days: dict[tuple[int, dt.date], _Day] = field(default_factory=dict)
    relay: list[tuple] = field(default_factory=list)

    def reading(self, meter_id: int, read_at: dt.datetime, register_wh: int, used_wh: int,
                period_raw: tuple[int, int, int, int] | None = None) -> None:
        """A stored reading whose register moved (or the meter's first): `used_wh` the energy
        since the one before that was judged plausible (0 when not), counted in the quarter the
        reading ends in; `period_raw` the per-period registers (0.01 kWh) when read."""
        day, quarter = day_and_quarter(read_at)
        periods = _periods_wh(period_raw)
        row = self.days.get((meter_id, day))
        if row is None:
            row = self.days[(meter_id, day)] = _Day(register_wh, register_wh, read_at, 0,
                                                    [0] * QUARTERS, periods, read_at)
        elif read_at >= row.read_at or row.seen_only:
            row.register_wh, row.read_at, row.periods = register_wh, read_at, periods
        row.seen_only = False
        if read_at < row.first_at:
            row.opening_wh, row.first_at = register_wh, read_at
        row.used_wh += used_wh
        row.curve[quarter] += used_wh

    def seen(self, meter_id: int, read_at: dt.datetime, register_wh: int,
             period_raw: tuple[int, int, int, int] | None = None) -> None:
        """A reading whose register did not move (an unchanged poll, or only the relay moved):
        the meter was read that day. A day with no row yet (stored or in this batch) gets one,
        nothing used, its registers those read (`opening_wh` = `register_wh`); a day with one
        is left as it is. The worker calls it for a meter's first such reading of a local day
        (`meters.store`), so that the reading success rate (app/estate/indicators.py) finds
        every day a meter answered, once the raw readings are gone."""
        day, _ = day_and_quarter(read_at)
        if (meter_id, day) not in self.days:
            self.days[(meter_id, day)] = _Day(register_wh, register_wh, read_at, 0,
                                              [0] * QUARTERS, _periods_wh(period_raw), read_at,
                                              seen_only=True)

    def relay_changed(self, meter_id: int, at: dt.datetime, relay_open: bool,
                      source: str = READING) -> None:
        self.relay.append((meter_id, at, relay_open, source))

    def write(self, connection) -> None:
        """The batch's rows, in the caller's transaction: the days already stored read once and
        merged (a later reading's registers, energy and curve added), then one executemany of
        inserts and one of updates."""
        if self.days:
            self._write_days(connection)
        if self.relay:
            driver_executemany(connection, _INSERT_RELAY,
                               [_RELAY.c[c] for c in _RELAY_COLUMNS], self.relay)

    def _write_days(self, connection) -> None:
        stored = {}
        meter_ids = sorted({m for m, _ in self.days})
        days = sorted({d for _, d in self.days})
        for row in connection.execute(
                sa.select(_DAILY.c.meter_id, _DAILY.c.day, _DAILY.c.opening_wh,
                          _DAILY.c.register_wh, _DAILY.c.read_at, _DAILY.c.used_wh,
                          _DAILY.c.curve, _DAILY.c.spike_wh, _DAILY.c.peak_wh, _DAILY.c.flat_wh,
                          _DAILY.c.valley_wh)
                .where(_DAILY.c.meter_id.in_(meter_ids), _DAILY.c.day.in_(days))):
            stored[(row[0], row[1])] = row
        inserts, updates = [], []
        for (meter_id, day), new in self.days.items():
            old = stored.get((meter_id, day))
            if old is not None and new.seen_only:
                continue  # the day was recorded already
            if old is None:
                inserts.append((meter_id, day, new.opening_wh, new.register_wh, new.read_at,
                                new.used_wh, format_curve(new.curve), *new.periods))
                continue
            curve = [a + b for a, b in zip(parse_curve(old.curve), new.curve)]
            if new.read_at >= old.read_at:
                register, read_at, periods = new.register_wh, new.read_at, new.periods
            else:
                register, read_at, periods = old.register_wh, old.read_at, list(old[7:])
            updates.append((old.opening_wh, register, read_at, old.used_wh + new.used_wh,
                            format_curve(curve), *periods, meter_id, day))
        if inserts:
            driver_executemany(connection, _INSERT_DAY, [_DAILY.c[c] for c in _DAY_COLUMNS],
                               inserts)
        if updates:
            driver_executemany(connection, _UPDATE_DAY,
                               [_DAILY.c[c] for c in (*_DAY_COLUMNS[2:], "meter_id", "day")],
                               updates)


_DAY_COLUMNS = ("meter_id", "day", "opening_wh", "register_wh", "read_at", "used_wh", "curve",
                "spike_wh", "peak_wh", "flat_wh", "valley_wh")
_INSERT_DAY = (f"INSERT INTO {_DAILY.name} ({', '.join(_DAY_COLUMNS)}) "
               f"VALUES ({', '.join(['{p}'] * len(_DAY_COLUMNS))})")
_UPDATE_DAY = (f"UPDATE {_DAILY.name} SET "
               + ", ".join(f"{c} = {{p}}" for c in _DAY_COLUMNS[2:])
               + " WHERE meter_id = {p} AND day = {p}")
_RELAY_COLUMNS = ("meter_id", "at", "relay_open", "source")
_INSERT_RELAY = (f"INSERT INTO {_RELAY.name} ({', '.join(_RELAY_COLUMNS)}) "
                 f"VALUES ({', '.join(['{p}'] * len(_RELAY_COLUMNS))})")


def _periods_wh(period_raw) -> list:
    """The per-period registers read (0.01 kWh each) in Wh; None each when not read."""
    return [None] * 4 if period_raw is None else [x * 10 for x in period_raw]


def local_midnight(moment: dt.datetime) -> dt.datetime:
    """The start (UTC) of the local (China time) day holding `moment`."""
    local = moment.astimezone(CHINA_TZ)
    return dt.datetime(local.year, local.month, local.day,
                       tzinfo=CHINA_TZ).astimezone(dt.timezone.utc)


def drop_old_readings(engine, now: dt.datetime, retention_days: int) -> int:
    """Drop the raw readings older than `retention_days` (0: keep all); returns how many.
    Meter by meter through the (meter_id, read_at) index, 500 meters a statement: no scan of
    the table, and nothing to do is a few index seeks."""
    if retention_days <= 0:
        return 0
    cutoff = now - dt.timedelta(days=retention_days)
    with transaction(engine, read_only=True) as s:
        meter_ids = list(s.execute(sa.select(Meter.id).order_by(Meter.id)).scalars())
    dropped = 0
    for i in range(0, len(meter_ids), 500):
        with transaction(engine) as s:
            dropped += s.execute(sa.delete(Reading).where(
                Reading.meter_id.in_(meter_ids[i:i + 500]), Reading.read_at < cutoff)).rowcount
    return dropped
