"""The JSON form of tariffs and usages (docs/tariffs.md), parsed and validated into `model`.

Every refusal is a `TariffError` whose message starts with the path of the field at fault
(``tiers[1].up_to_kwh: ...``, ``periods[2].ranges[0]: ...``, ``usage.periods.shoulder: ...``).
Numbers are exact: prices go through `app.money.parse_price`, kWh become integer Wh, and a JSON
float is refused (`load_tariff`/`load_usage` read JSON numbers as `Decimal`, so none arises).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from app.money import WH_PER_KWH, parse_price
from app.tariffs.model import (
    CYCLES,
    KINDS,
    MAX_PERIODS,
    MINUTES_PER_DAY,
    FlatTariff,
    Period,
    Season,
    Tariff,
    TariffError,
    Tier,
    TieredTariff,
    TieredTouTariff,
    TimeRange,
    TouTariff,
    Usage,
)

_COMMON_KEYS = {"kind", "note"}
_KIND_KEYS = {
    "flat": {"price"},
    "tiered": {"cycle", "tiers", "seasons", "bound_uplift_kwh"},
    "tou": {"periods", "seasons"},
    "tiered_tou": {"cycle", "tiers", "periods", "seasons", "bound_uplift_kwh"},
}
_TIME = re.compile(r"^(\d{2}):(\d{2})$")


# --- JSON text -------------------------------------------------------------------------------

def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=str)
    except json.JSONDecodeError as exc:
        raise TariffError(f"{what}: not valid JSON: {exc}") from exc


def load_tariff(text: str) -> Tariff:
    """Parse a tariff from JSON text (numbers read as Decimal, never float)."""
    return parse_tariff(_loads(text, "tariff"))


def load_usage(text: str) -> Usage:
    """Parse a usage from JSON text (numbers read as Decimal, never float)."""
    return parse_usage(_loads(text, "usage"))


# --- values ------------------------------------------------------------------------------------

def _decimal(value: Any, path: str) -> Decimal:
    """An exact, finite, non-negative Decimal from a string, an int or a Decimal."""
    if isinstance(value, float):
        raise TariffError(f"{path}: write the number as a string (\"{value}\"): floats are not exact")
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise TariffError(f"{path}: must be a number written as a string, got {_json_type(value)}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise TariffError(f"{path}: not a number: {value!r}") from exc
    if not number.is_finite():
        raise TariffError(f"{path}: not a finite number: {value!r}")
    if number < 0:
        raise TariffError(f"{path}: must be zero or more, got {value!r}")
    return number


def kwh_to_wh(value: Any, path: str) -> int:
    """kWh (a decimal string, an int or a Decimal; at most three decimals) as integer Wh."""
    wh = _decimal(value, path) * WH_PER_KWH
    if wh != wh.to_integral_value():
        raise TariffError(f"{path}: finer than a watt-hour (at most 3 decimals of a kWh): {value!r}")
    return int(wh)


def format_kwh(wh: int) -> str:
    """Integer Wh as the shortest exact kWh: 240000 → "240", 240500 → "240.5"."""
    whole, part = divmod(wh, WH_PER_KWH)
    return f"{whole}.{part:03d}".rstrip("0").rstrip(".") if part else str(whole)


def _price(value: Any, path: str) -> Decimal:
    _decimal(value, path)  # the type checks and messages above, then money's own rule
    try:
        return parse_price(value)
    except ValueError as exc:
        raise TariffError(f"{path}: {exc}") from exc


def _minute(value: Any, path: str, *, end: bool) -> int:
    match = _TIME.match(value) if isinstance(value, str) else None
    if not match:
        raise TariffError(f"{path}: must be a time of day \"HH:MM\", got {value!r}")
    hours, minutes = int(match[1]), int(match[2])
    if (hours, minutes) == (24, 0) and end:
        return MINUTES_PER_DAY
    if hours > 23 or minutes > 59:
        limit = "00:00 to 24:00" if end else "00:00 to 23:59"
        raise TariffError(f"{path}: must be a time from {limit}, got {value!r}")
    return hours * 60 + minutes


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false",
             type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _object(value: Any, path: str, allowed: set[str], required: tuple[str, ...] = ()) -> Mapping:
    if not isinstance(value, Mapping):
        raise TariffError(f"{path}: must be an object, got {_json_type(value)}")
    for key in value:
        if key not in allowed:
            raise TariffError(f"{_join(path, key)}: unknown field (expected one of "
                              f"{', '.join(sorted(allowed))})")
    for key in required:
        if key not in value:
            raise TariffError(f"{_join(path, key)}: required")
    return value


def _list(value: Any, path: str, *, min_len: int = 1) -> list:
    if not isinstance(value, list):
        raise TariffError(f"{path}: must be a list, got {_json_type(value)}")
    if len(value) < min_len:
        raise TariffError(f"{path}: must not be empty")
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- tariffs -----------------------------------------------------------------------------------

def parse_tariff(data: Any) -> Tariff:
    """Validate the JSON form (already decoded) of a tariff and build its model."""
    if not isinstance(data, Mapping):
        raise TariffError(f"tariff: must be an object, got {_json_type(data)}")
    kind = data.get("kind")
    if kind is None:
        raise TariffError(f"kind: required (one of {', '.join(KINDS)})")
    if kind not in KINDS:
        raise TariffError(f"kind: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    required = {"flat": ("price",), "tiered": ("cycle", "tiers"), "tou": ("periods",),
                "tiered_tou": ("cycle", "tiers", "periods")}[kind]
    _object(data, "", _COMMON_KEYS | _KIND_KEYS[kind], required)
    if "note" in data and not isinstance(data["note"], str):
        raise TariffError("note: must be a string")
    if kind == "flat":
        return FlatTariff(price_yuan_per_kwh=_price(data["price"], "price"))
    seasons_raw = data.get("seasons", [])
    if kind == "tou":
        periods = _periods(data["periods"], "periods")
        return TouTariff(periods=periods, seasons=_seasons(seasons_raw, kind, 0))
    cycle = data["cycle"]
    if cycle not in CYCLES:
        raise TariffError(f"cycle: must be \"month\" or \"year\", got {cycle!r}")
    tiers = _tiers(data["tiers"], "add" if kind == "tiered_tou" else "price")
    uplift_wh = kwh_to_wh(data.get("bound_uplift_kwh", 0), "bound_uplift_kwh")
    seasons = _seasons(seasons_raw, kind, len(tiers))
    if kind == "tiered":
        return TieredTariff(cycle=cycle, tiers=tiers, seasons=seasons, bound_uplift_wh=uplift_wh)
    return TieredTouTariff(cycle=cycle, tiers=tiers, periods=_periods(data["periods"], "periods"),
                           seasons=seasons, bound_uplift_wh=uplift_wh)


def _tiers(value: Any, price_key: str) -> tuple[Tier, ...]:
    raw = _list(value, "tiers")
    items = [_object(t, f"tiers[{i}]", {"up_to_kwh", price_key}, ("up_to_kwh", price_key))
             for i, t in enumerate(raw)]
    bounds = _bounds([t["up_to_kwh"] for t in items],
                     [f"tiers[{i}].up_to_kwh" for i in range(len(items))])
    tiers = []
    for i, (item, bound) in enumerate(zip(items, bounds)):
        price = _price(item[price_key], f"tiers[{i}].{price_key}")
        tiers.append(Tier(bound, price_yuan_per_kwh=price) if price_key == "price"
                     else Tier(bound, add_yuan_per_kwh=price))
    return tuple(tiers)


def _bounds(raw: list, paths: list[str]) -> tuple[int | None, ...]:
    """Upper bounds, inclusive, strictly increasing, the last one null (open-ended)."""
    bounds: list[int | None] = []
    for i, (value, path) in enumerate(zip(raw, paths)):
        last = i == len(raw) - 1
        if value is None:
            if not last:
                raise TariffError(f"{path}: only the last tier may be open-ended (null)")
            bounds.append(None)
            continue
        if last:
            raise TariffError(f"{path}: the last tier must be open-ended (null), got {value!r}")
        wh = kwh_to_wh(value, path)
        if wh <= 0:
            raise TariffError(f"{path}: must be greater than 0")
        if bounds and wh <= bounds[-1]:
            raise TariffError(f"{path}: must be greater than {paths[i - 1]} "
                              f"({format_kwh(bounds[-1])})")
        bounds.append(wh)
    return tuple(bounds)


def _periods(value: Any, path: str) -> tuple[Period, ...]:
    raw = _list(value, path)
    if len(raw) > MAX_PERIODS:
        raise TariffError(f"{path}: at most {MAX_PERIODS} periods (spike, peak, flat, valley), "
                          f"got {len(raw)}")
    periods: list[Period] = []
    for i, item in enumerate(raw):
        here = f"{path}[{i}]"
        item = _object(item, here, {"name", "price", "from", "to", "ranges"}, ("name", "price"))
        name = item["name"]
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise TariffError(f"{here}.name: must be a non-empty name without surrounding "
                              f"spaces, got {name!r}")
        for j, other in enumerate(periods):
            if other.name == name:
                raise TariffError(f"{here}.name: {name!r} is already the name of {path}[{j}]")
        periods.append(Period(name, _price(item["price"], f"{here}.price"), _ranges(item, here)))
    _check_coverage(periods, path)
    return tuple(periods)


def _ranges(item: Mapping, here: str) -> tuple[TimeRange, ...]:
    if "ranges" in item:
        if "from" in item or "to" in item:
            raise TariffError(f"{here}: give either from and to, or ranges, not both")
        pairs = [(pair, f"{here}.ranges[{k}]") for k, pair in
                 enumerate(_list(item["ranges"], f"{here}.ranges"))]
    else:
        for key in ("from", "to"):
            if key not in item:
                raise TariffError(f"{here}.{key}: required (or give ranges)")
        pairs = [([item["from"], item["to"]], here)]
    ranges = []
    for pair, where in pairs:
        if not isinstance(pair, list) or len(pair) != 2:
            raise TariffError(f"{where}: must be a pair [\"HH:MM\", \"HH:MM\"], got {pair!r}")
        names = ("from", "to") if where == here else ("[0]", "[1]")
        sep = "." if where == here else ""
        start = _minute(pair[0], f"{where}{sep}{names[0]}", end=False)
        end = _minute(pair[1], f"{where}{sep}{names[1]}", end=True)
        if start == end:
            raise TariffError(f"{where}{sep}{names[1]}: must differ from the start "
                              f"({_hhmm(start)}); the whole day is 00:00 to 24:00")
        ranges.append(TimeRange(start, end))
    return tuple(ranges)


def _check_coverage(periods: list[Period], path: str) -> None:
    """The periods' ranges must cover the 24 hours exactly once: no overlap, no gap."""
    owner: list[int | None] = [None] * MINUTES_PER_DAY
    for i, period in enumerate(periods):
        for k, time_range in enumerate(period.ranges):
            where = f"{path}[{i}]" + (f".ranges[{k}]" if len(period.ranges) > 1 else "")
            for minute in time_range.minutes():
                if owner[minute] is not None:
                    j = owner[minute]
                    raise TariffError(
                        f"{where}: {_hhmm(time_range.start_min)}–{_hhmm(time_range.end_min)} "
                        f"overlaps {path}[{j}] ({periods[j].name}) at {_hhmm(minute)}")
                owner[minute] = i
    if None in owner:  # some minute is covered (no range is empty): find where a gap starts
        start = next(m for m in range(MINUTES_PER_DAY)
                     if owner[m] is None and owner[m - 1] is not None)
        end = start
        while owner[end % MINUTES_PER_DAY] is None:
            end += 1
        raise TariffError(f"{path}: {_hhmm(start % MINUTES_PER_DAY)}–"
                          f"{_hhmm(end % MINUTES_PER_DAY)} is in no period (the periods must "
                          f"cover the 24 hours exactly once)")


def _seasons(value: Any, kind: str, tier_count: int) -> tuple[Season, ...]:
    if value == []:
        return ()
    keys = {"tiered": {"tiers_up_to_kwh"}, "tou": {"periods"},
            "tiered_tou": {"tiers_up_to_kwh", "periods"}}[kind]
    seen: dict[int, int] = {}
    seasons = []
    for i, item in enumerate(_list(value, "seasons")):
        here = f"seasons[{i}]"
        item = _object(item, here, {"name", "months"} | keys, ("months",))
        if not keys & item.keys():
            raise TariffError(f"{here}: give {' and/or '.join(sorted(keys))} (what the season "
                              "changes)")
        name = item.get("name", f"season {i + 1}")
        if not isinstance(name, str) or not name.strip():
            raise TariffError(f"{here}.name: must be a non-empty string, got {name!r}")
        months = set()
        for k, month in enumerate(_list(item["months"], f"{here}.months")):
            where = f"{here}.months[{k}]"
            if isinstance(month, bool) or not isinstance(month, int) or not 1 <= month <= 12:
                raise TariffError(f"{where}: must be a month number from 1 to 12, got {month!r}")
            if month in seen:
                other = "seasons[%d]" % seen[month]
                raise TariffError(f"{where}: month {month} is already in {other}")
            seen[month] = i
            months.add(month)
        bounds = None
        if "tiers_up_to_kwh" in item:
            raw = _list(item["tiers_up_to_kwh"], f"{here}.tiers_up_to_kwh")
            if len(raw) != tier_count:
                raise TariffError(f"{here}.tiers_up_to_kwh: must have {tier_count} bounds, one "
                                  f"per tier (the last null), got {len(raw)}")
            bounds = _bounds(raw, [f"{here}.tiers_up_to_kwh[{k}]" for k in range(len(raw))])
        periods = _periods(item["periods"], f"{here}.periods") if "periods" in item else None
        seasons.append(Season(name, frozenset(months), bounds, periods))
    return tuple(seasons)


# --- usages ------------------------------------------------------------------------------------

def parse_usage(data: Any) -> Usage:
    """Validate the JSON form of a usage: ``{"before_kwh", "kwh" | "periods", "month"?,
    "uplift_kwh"?}``. Whether it fits a tariff (period names, a month for seasons) is checked
    when it is priced."""
    item = _object(data, "usage", {"before_kwh", "kwh", "periods", "month", "uplift_kwh"})
    if ("kwh" in item) == ("periods" in item):
        raise TariffError("usage: give either kwh (one total) or periods (kWh per period name)")
    before_wh = kwh_to_wh(item.get("before_kwh", 0), "usage.before_kwh")
    uplift_wh = kwh_to_wh(item.get("uplift_kwh", 0), "usage.uplift_kwh")
    month = item.get("month")
    if month is not None and (isinstance(month, bool) or not isinstance(month, int)
                              or not 1 <= month <= 12):
        raise TariffError(f"usage.month: must be a month number from 1 to 12, got {month!r}")
    if "kwh" in item:
        return Usage(before_wh, energy_wh=kwh_to_wh(item["kwh"], "usage.kwh"), month=month,
                     uplift_wh=uplift_wh)
    periods = item["periods"]
    if not isinstance(periods, Mapping):
        raise TariffError(f"usage.periods: must be an object of kWh by period name, got "
                          f"{_json_type(periods)}")
    period_wh = {name: kwh_to_wh(kwh, f"usage.periods.{name}") for name, kwh in periods.items()}
    return Usage(before_wh, period_wh=period_wh, month=month, uplift_wh=uplift_wh)
