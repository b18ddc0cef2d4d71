"""Quotes: energy in whole Wh priced by a tariff, exactly, rounded once to fen.

Pure functions: no database, no clock, no I/O. Every line of a quote is `energy_cost(wh, price)`
for a whole number of Wh at a four-place price, so each line and the total are exact Decimals
(at most 7 decimal places of a yuan, what `billing` keeps as `billed_exact_e7`), the lines sum to
`exact_yuan` exactly, and `charge_fen = to_fen(exact_yuan)` is the one rounding.

Rules (docs/tariffs.md says the same):
- Tiers: a tier's bound is inclusive; usage fills the tiers from the cycle's `before_wh` on.
- Tiered + time-of-use, when the interval crosses a tier bound: the interval's total is split
  across tiers as above; the tiers are then filled in order, each taking its energy from the
  periods in proportion to the period energy not yet taken (the interval's proportions), in
  whole Wh, the leftover Wh going to the largest remainders (ties: the period listed first).
  Each period's lines sum to its usage and each tier's lines to its share, to the Wh.
- Tariff versions: a version is in effect from local midnight (China time, UTC+8) of its
  `effective_from`; an interval straddling a change is split in proportion to time, each
  period's energy alike, the cumulative energy at each cut rounded half up to the Wh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from app.money import WH_PER_KWH, energy_cost, fen_to_yuan_str, to_fen
from app.tariffs.model import (
    FlatTariff,
    Period,
    Season,
    Tariff,
    TariffError,
    TariffVersion,
    TieredTariff,
    TieredTouTariff,
    TouTariff,
    Usage,
)
from app.tariffs.schema import kwh_to_wh

CHINA_TZ = timezone(timedelta(hours=8), "CST")  # no daylight saving since 1991

Energy = int | Mapping[str, int]  # Wh in all, or Wh per period name


@dataclass(frozen=True)
class QuoteLine:
    """`energy_wh` at `price_yuan_per_kwh` costs exactly `amount_yuan`. `tier` counts from 1
    (第一档) for tiered tariffs; `period` names the time-of-use period."""

    energy_wh: int
    price_yuan_per_kwh: Decimal
    amount_yuan: Decimal
    tier: int | None = None
    period: str | None = None

    @property
    def kwh(self) -> Decimal:
        return Decimal(self.energy_wh) / WH_PER_KWH

    def as_dict(self) -> dict[str, Any]:
        return {"tier": self.tier, "period": self.period, "energy_wh": self.energy_wh,
                "kwh": format_kwh_fixed(self.energy_wh),
                "price": str(self.price_yuan_per_kwh), "amount_yuan": format_yuan(self.amount_yuan)}


@dataclass(frozen=True)
class Quote:
    """The exact cost (never rounded), the charge in fen (`to_fen` of it), and the lines whose
    amounts sum exactly to `exact_yuan`. Lines with no energy are left out."""

    exact_yuan: Decimal
    charge_fen: int
    lines: list[QuoteLine]

    @property
    def energy_wh(self) -> int:
        return sum(line.energy_wh for line in self.lines)

    def as_dict(self) -> dict[str, Any]:
        return {"exact_yuan": format_yuan(self.exact_yuan), "charge_fen": self.charge_fen,
                "charge_yuan": fen_to_yuan_str(self.charge_fen),
                "lines": [line.as_dict() for line in self.lines]}


def format_yuan(amount: Decimal) -> str:
    """An exact yuan amount with at least four decimals, never rounded: "149.4900", "0.0004883"."""
    places = max(4, -amount.normalize().as_tuple().exponent)
    return f"{amount.quantize(Decimal(1).scaleb(-places)):f}"


def format_kwh_fixed(wh: int) -> str:
    """Integer Wh as kWh with three decimals: 40000 → "40.000"."""
    return f"{(Decimal(wh) / WH_PER_KWH).quantize(Decimal('0.001')):f}"


def make_quote(lines: list[QuoteLine]) -> Quote:
    exact = sum((line.amount_yuan for line in lines), Decimal(0))
    return Quote(exact_yuan=exact, charge_fen=to_fen(exact), lines=lines)


# --- one interval ------------------------------------------------------------------------------

def price_interval(tariff: Tariff, before_wh: int, wh: Energy, *,
                   uplift_kwh: Decimal | int | str = 0, month: int | None = None) -> Quote:
    """Price `wh` watt-hours used after `before_wh` already used in the tariff's cycle.

    `wh` is an int for flat and tiered tariffs, a mapping of period name → Wh for time-of-use
    ones (missing periods used nothing). `uplift_kwh` raises every finite tier bound (一户多人口:
    pass `tariff.bound_uplift_kwh` for a household that qualifies); `month` (1..12, local
    time) picks the season and is required when the tariff has seasons. The caller resets
    `before_wh` to 0 at the start of each cycle. Raises `TariffError`; never rounds but once."""
    if isinstance(before_wh, bool) or not isinstance(before_wh, int) or before_wh < 0:
        raise TariffError(f"usage.before_kwh: must be zero or more whole Wh, got {before_wh!r}")
    if isinstance(wh, Mapping):
        for name, value in wh.items():
            _check_wh(value, f"usage.periods.{name}")
        energy: Energy = dict(wh)
    else:
        _check_wh(wh, "usage.kwh")
        energy = wh
    return _price(tariff, before_wh, energy, kwh_to_wh(uplift_kwh, "uplift_kwh"), month)


def quote_usage(tariff: Tariff, usage: Usage) -> Quote:
    """Price a parsed `Usage` (the CLI's and docs' form)."""
    energy = usage.period_wh if usage.period_wh is not None else usage.energy_wh
    return _price(tariff, usage.before_wh, energy, usage.uplift_wh, usage.month)


def _check_wh(value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TariffError(f"{path}: must be zero or more whole Wh, got {value!r}")


def _season_checked(tariff: Tariff, month: int | None):
    """The season of `month` in `tariff`, after checking both are what pricing takes."""
    if not isinstance(tariff, (FlatTariff, TieredTariff, TouTariff, TieredTouTariff)):
        raise TariffError(f"tariff: not a parsed tariff (use schema.parse_tariff), got "
                          f"{type(tariff).__name__}")
    if month is not None and (isinstance(month, bool) or not isinstance(month, int)
                              or not 1 <= month <= 12):
        raise TariffError(f"usage.month: must be a month number from 1 to 12, got {month!r}")
    return _season(tariff, month)


def _price(tariff: Tariff, before_wh: int, energy: Energy, uplift_wh: int,
           month: int | None) -> Quote:
    season = _season_checked(tariff, month)
    if isinstance(tariff, (FlatTariff, TieredTariff)):
        if not isinstance(energy, int):
            raise TariffError(f"usage.periods: a {tariff.kind} tariff has no periods; give kwh")
        if isinstance(tariff, FlatTariff):
            return make_quote(_lines([(None, None, energy, tariff.price_yuan_per_kwh)]))
        bounds = _bounds(tariff, season, uplift_wh)
        return make_quote(_lines([(i, None, part, tariff.tiers[i].price_yuan_per_kwh)
                                  for i, part in enumerate(split_tiers(bounds, before_wh, energy))]))
    periods = season.periods if season and season.periods else tariff.periods
    if isinstance(energy, int):
        raise TariffError(f"usage.kwh: a {tariff.kind} tariff prices by period; give periods "
                          f"(kWh per period: {', '.join(p.name for p in periods)})")
    period_wh = _period_wh(periods, energy, month)
    if isinstance(tariff, TouTariff):
        return make_quote(_lines([(None, p.name, wh, p.price_yuan_per_kwh)
                                  for p, wh in zip(periods, period_wh)]))
    tier_wh = split_tiers(_bounds(tariff, season, uplift_wh), before_wh, sum(period_wh))
    rows = allocate(tier_wh, period_wh)
    return make_quote(_lines([
        (i, p.name, wh, p.price_yuan_per_kwh + tariff.tiers[i].add_yuan_per_kwh)
        for i, row in enumerate(rows) for p, wh in zip(periods, row)]))


def _lines(parts: list[tuple[int | None, str | None, int, Decimal]]) -> list[QuoteLine]:
    return [QuoteLine(wh, price, energy_cost(wh, price), None if tier is None else tier + 1, name)
            for tier, name, wh, price in parts if wh]


def _season(tariff: Tariff, month: int | None) -> Season | None:
    seasons = getattr(tariff, "seasons", ())
    if not seasons:
        return None
    if month is None:
        raise TariffError("usage.month: required: the tariff's seasons depend on the month")
    return next((s for s in seasons if month in s.months), None)


def _bounds(tariff: TieredTariff | TieredTouTariff, season: Season | None,
            uplift_wh: int) -> list[int | None]:
    bounds = season.tier_bounds_wh if season and season.tier_bounds_wh else \
        [t.up_to_wh for t in tariff.tiers]
    return [None if b is None else b + uplift_wh for b in bounds]


def _period_wh(periods: Sequence[Period], energy: Mapping[str, int], month: int | None) -> list[int]:
    names = [p.name for p in periods]
    for name in energy:
        if name not in names:
            when = f" in month {month}" if month is not None else ""
            raise TariffError(f"usage.periods.{name}: the tariff has no period {name!r}{when} "
                              f"(it has {', '.join(names)})")
    return [energy.get(name, 0) for name in names]


def split_tiers(bounds_wh: Sequence[int | None], before_wh: int, wh: int) -> list[int]:
    """Wh of the interval (before_wh, before_wh + wh] falling in each tier; bounds inclusive,
    increasing, the last None. The parts sum to `wh`."""
    parts, lower, end = [], 0, before_wh + wh
    for bound in bounds_wh:
        upper = end if bound is None else min(bound, end)
        parts.append(max(0, upper - max(before_wh, lower)))
        lower = lower if bound is None else bound
    return parts


def allocate(tier_wh: Sequence[int], period_wh: Sequence[int]) -> list[list[int]]:
    """Whole-Wh table [tier][period] whose rows sum to `tier_wh` and columns to `period_wh`
    (both summing to the same total), each tier sharing its energy among the periods in
    proportion to what the periods have left, leftover Wh to the largest remainders, ties to
    the first period. Exact integers: nothing is lost or invented."""
    remaining, rows = list(period_wh), []
    for tier_total in tier_wh:
        left_total = sum(remaining)
        if tier_total == left_total:
            row = list(remaining)
        else:
            shares = [divmod(tier_total * r, left_total) for r in remaining]
            row = [q for q, _ in shares]
            by_remainder = sorted(range(len(row)), key=lambda j: (-shares[j][1], j))
            for j in by_remainder[:tier_total - sum(row)]:
                row[j] += 1
        remaining = [r - x for r, x in zip(remaining, row)]
        rows.append(row)
    return rows


# --- integer price tables (batches of intervals) ------------------------------------------------

@dataclass(frozen=True)
class PriceTable:
    """A tariff's prices for one month (its season) and one uplift of the tier bounds, as
    integers, to price many intervals exactly without a Decimal operation per interval.

    A price of `p` 元/kWh is kept as the integer `units[tier][column] = p × 10**places` (`places`
    is the most decimal places of any of the tariff's prices, at least 4: schema prices have
    exactly 4), so `wh` Wh cost exactly `wh × units × 10**-(places + 3)` 元 (`yuan`), the same
    number as `energy_cost(wh, p)`: integer sums of such costs are exact, nothing is rounded.
    Rows are tiers (one row for flat and time-of-use tariffs); columns are the periods in the
    tariff's (season's) order, or one column named None for flat and tiered tariffs. `bounds_wh`
    are the tier bounds as `split_tiers` takes them (uplift included, the last None)."""

    tariff: Tariff
    month: int | None
    uplift_wh: int
    bounds_wh: tuple[int | None, ...]
    names: tuple[str | None, ...]
    prices: tuple[tuple[Decimal, ...], ...]
    units: tuple[tuple[int, ...], ...]
    places: int
    finite_wh: tuple[int, ...]  # the finite tier bounds, increasing
    tiered: bool  # lines carry a tier (tiered, tiered_tou)
    by_period: bool  # energy comes per period (tou, tiered_tou)

    def yuan(self, amount_units: int) -> Decimal:
        """An integer amount in units of 10**-(places + 3) 元 as an exact Decimal."""
        return Decimal(amount_units).scaleb(-(self.places + 3))

    def split(self, before_wh: int, energy: Energy) -> list[tuple[int, int, int]]:
        """`energy` used after `before_wh` as (tier row, column, Wh), by the rule of
        `price_interval` (`split_tiers`, and `allocate` for tiered + time-of-use). Raises
        `TariffError` as `price_interval` would for energy of the wrong form or an unknown
        period."""
        if isinstance(energy, Mapping) != self.by_period or (
                isinstance(energy, Mapping) and any(n not in self.names for n in energy)):
            price_interval(self.tariff, before_wh, energy, month=self.month,
                           uplift_kwh=Decimal(self.uplift_wh) / WH_PER_KWH)  # raises
            raise AssertionError("price_interval accepted what the price table refuses")
        if not self.by_period:
            return [(i, 0, wh) for i, wh in
                    enumerate(split_tiers(self.bounds_wh, before_wh, energy)) if wh]
        period_wh = [energy.get(name, 0) for name in self.names]
        if not self.tiered:
            return [(0, j, wh) for j, wh in enumerate(period_wh) if wh]
        rows = allocate(split_tiers(self.bounds_wh, before_wh, sum(period_wh)), period_wh)
        return [(i, j, wh) for i, row in enumerate(rows) for j, wh in enumerate(row) if wh]


_tables: dict[tuple[int, int | None, int], PriceTable] = {}


def price_table(tariff: Tariff, month: int | None = None, uplift_wh: int = 0) -> PriceTable:
    """The `PriceTable` of `tariff` in `month` (required when the tariff has seasons) with every
    finite tier bound raised by `uplift_wh`. Cached: tariffs are immutable."""
    key = (id(tariff), month, uplift_wh)
    table = _tables.get(key)
    if table is not None and table.tariff is tariff:
        return table
    season = _season_checked(tariff, month)
    if isinstance(tariff, FlatTariff):
        bounds, names, prices = (None,), (None,), [[tariff.price_yuan_per_kwh]]
    elif isinstance(tariff, TieredTariff):
        bounds, names = tuple(_bounds(tariff, season, uplift_wh)), (None,)
        prices = [[tier.price_yuan_per_kwh] for tier in tariff.tiers]
    else:
        periods = season.periods if season and season.periods else tariff.periods
        names = tuple(p.name for p in periods)
        if isinstance(tariff, TouTariff):
            bounds, adds = (None,), [Decimal(0)]
        else:
            bounds = tuple(_bounds(tariff, season, uplift_wh))
            adds = [tier.add_yuan_per_kwh for tier in tariff.tiers]
        prices = [[p.price_yuan_per_kwh + add for p in periods] for add in adds]
    places = max([4] + [-price.as_tuple().exponent for row in prices for price in row])
    scale = 10 ** places
    table = PriceTable(tariff, month, uplift_wh, bounds, names,
                       tuple(tuple(row) for row in prices),
                       tuple(tuple(int(price * scale) for price in row) for row in prices), places,
                       bounds[:-1], isinstance(tariff, (TieredTariff, TieredTouTariff)),
                       isinstance(tariff, (TouTariff, TieredTouTariff)))
    if len(_tables) >= 1024:  # tariffs come and go with their versions: keep the cache small
        _tables.clear()
    _tables[key] = table
    return table


# --- versions ----------------------------------------------------------------------------------

def _versions(versions: Sequence[TariffVersion]) -> list[TariffVersion]:
    ordered = sorted(versions, key=lambda v: v.effective_from)
    if not ordered:
        raise TariffError("versions: no tariff version given")
    for a, b in zip(ordered, ordered[1:]):
        if a.effective_from == b.effective_from:
            raise TariffError(f"versions: two versions effective from {a.effective_from}")
    return ordered


def _local_date(when: date | datetime, tz: timezone) -> date:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise TariffError(f"when: must be timezone-aware, got {when.isoformat()}")
        return when.astimezone(tz).date()
    return when


def version_at(versions: Sequence[TariffVersion], when: date | datetime, *,
               tz: timezone = CHINA_TZ) -> TariffVersion:
    """The version in effect on `when` (a local date, or an aware datetime)."""
    day = _local_date(when, tz)
    current = None
    for version in _versions(versions):
        if version.effective_from <= day:
            current = version
    if current is None:
        raise TariffError(f"versions: no tariff in effect on {day} (the first is effective from "
                          f"{_versions(versions)[0].effective_from})")
    return current


def tariff_at(versions: Sequence[TariffVersion], when: date | datetime, *,
              tz: timezone = CHINA_TZ) -> Tariff:
    """The tariff in effect on `when` (a local date, or an aware datetime)."""
    return version_at(versions, when, tz=tz).tariff


def starts_at(day: date, tz: timezone = CHINA_TZ) -> datetime:
    """Local midnight of `day`, as an aware UTC datetime."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(timezone.utc)


@dataclass(frozen=True)
class IntervalPart:
    """A piece [start_at, end_at) of an interval, its share of the energy, and its tariff."""

    start_at: datetime
    end_at: datetime
    energy: Energy
    version: TariffVersion


def split_interval(start_at: datetime, end_at: datetime, energy: Energy,
                   cuts: Sequence[datetime]) -> list[tuple[datetime, datetime, Energy]]:
    """Cut [start_at, end_at) at the given instants, sharing `energy` (Wh, or Wh per period) in
    proportion to time: the cumulative energy at each cut is rounded half up to the Wh, so the
    parts sum exactly to the whole and none is negative. Cuts outside the interval are ignored."""
    for name, when in (("start_at", start_at), ("end_at", end_at)):
        if when.tzinfo is None:
            raise TariffError(f"{name}: must be timezone-aware, got {when.isoformat()}")
    if end_at <= start_at:
        raise TariffError(f"end_at: must be after start_at ({start_at.isoformat()})")
    inside = sorted({c for c in cuts if start_at < c < end_at})
    edges = [start_at, *inside, end_at]
    span_us = (end_at - start_at) // timedelta(microseconds=1)

    def cumulative(total: int, at: datetime) -> int:
        elapsed_us = (at - start_at) // timedelta(microseconds=1)
        return (2 * total * elapsed_us + span_us) // (2 * span_us)

    def share(total: int, a: datetime, b: datetime) -> int:
        return cumulative(total, b) - cumulative(total, a)

    parts = []
    for a, b in zip(edges, edges[1:]):
        if isinstance(energy, Mapping):
            parts.append((a, b, {name: share(wh, a, b) for name, wh in energy.items()}))
        else:
            parts.append((a, b, share(energy, a, b)))
    return parts


def split_at_versions(versions: Sequence[TariffVersion], start_at: datetime, end_at: datetime,
                      energy: Energy, *, tz: timezone = CHINA_TZ) -> list[IntervalPart]:
    """[start_at, end_at) cut where a tariff version takes effect (local midnight of its
    `effective_from`), energy shared in proportion to time (see `split_interval`)."""
    ordered = _versions(versions)
    cuts = [starts_at(v.effective_from, tz) for v in ordered]
    return [IntervalPart(a, b, e, version_at(ordered, a, tz=tz))
            for a, b, e in split_interval(start_at, end_at, energy, cuts)]


def price_span(versions: Sequence[TariffVersion], start_at: datetime, end_at: datetime,
               before_wh: int, energy: Energy, *, uplift_kwh: Decimal | int | str = 0,
               tz: timezone = CHINA_TZ) -> Quote:
    """Price the energy of [start_at, end_at) (UTC-aware) for the billing code.

    The interval is cut at tariff version changes and at local month starts (seasons, monthly
    cycles), energy shared in proportion to time. Each part is priced by the version in effect
    and the month it lies in; `before_wh` (the cycle's energy before `start_at`) carries from
    part to part, back to 0 where a part starts a new cycle of its tariff (the 1st of a month for
    "month", 1 January for "year"). A version change alone does not restart the cycle."""
    ordered = _versions(versions)
    cuts = [starts_at(v.effective_from, tz) for v in ordered] + _month_starts(start_at, end_at, tz)
    lines: list[QuoteLine] = []
    for a, b, part in split_interval(start_at, end_at, energy, cuts):
        tariff, local = tariff_at(ordered, a, tz=tz), a.astimezone(tz)
        cycle = getattr(tariff, "cycle", None)
        if a != start_at and a == starts_at(local.date(), tz) and local.day == 1 and \
                (cycle == "month" or (cycle == "year" and local.month == 1)):
            before_wh = 0
        lines += price_interval(tariff, before_wh, part, uplift_kwh=uplift_kwh,
                                month=local.month).lines
        before_wh += sum(part.values()) if isinstance(part, Mapping) else part
    return make_quote(lines)


def _month_starts(start_at: datetime, end_at: datetime, tz: timezone) -> list[datetime]:
    """Local midnights of the 1st of each month after `start_at`, up to `end_at`."""
    starts, day = [], _local_date(start_at, tz).replace(day=1)
    last = _local_date(end_at, tz)
    while True:
        day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        if day > last:
            return starts
        starts.append(starts_at(day, tz))
