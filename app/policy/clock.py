"""Estate-local time. Quiet hours and holidays are local: Asia/Shanghai, which has kept UTC+8
without daylight saving since 1991, so a fixed offset is exact and needs no tz database."""

from __future__ import annotations

import datetime as dt

LOCAL_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def to_local(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: use aware datetimes")
    return moment.astimezone(LOCAL_TZ)


def local_midnight(day: dt.date) -> dt.datetime:
    """The start of local `day`, as an aware datetime."""
    return dt.datetime.combine(day, dt.time(0, 0), LOCAL_TZ)


def local_str(moment: dt.datetime) -> str:
    return f"{to_local(moment):%Y-%m-%d %H:%M}"
