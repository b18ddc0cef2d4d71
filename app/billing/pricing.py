"""Pricing one metered interval with an account's tariff (pure: no database, no clock).

Rules (docs/billing.md says the same):
- Energy per time-of-use period comes from the meter's per-period registers (尖 峰 平 谷,
  0x0002–0x0009) when the meter has them, their differences are all ≥ 0, every period with
  energy is one the tariff has, and they add up to the total's step exactly; otherwise the step
  is shared among the periods in proportion to time (the interval cut at every period
  boundary, cumulative energy rounded half up to the Wh at each cut), and the charge says so.
- Tiers count the account's cycle energy (`cycle_wh`): the cycle restarts at local midnight
  of the 1st of the month ("month") or of 1 January ("year"); a version change alone does
  not restart it. Price changes split an interval at the change (`app.tariffs.price_span`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from decimal import Decimal

from app.money import energy_cost, to_fen
from app.tariffs import (CHINA_TZ, Quote, QuoteLine, TariffVersion, TouTariff, TieredTouTariff,
                         price_interval, split_interval, tariff_at)
from app.tariffs.pricing import _month_starts, make_quote, starts_at

# The meter's period registers, in codec order, and the tariff period names each may carry.
REGISTER_PERIODS = (("spike", "尖", "尖峰"), ("peak", "峰", "高峰"), ("flat", "平", "平段"),
                    ("valley", "谷", "低谷"))
BY_TIME = "by time"
BY_REGISTERS = "by registers"


@dataclass(frozen=True)
class Priced:
    quote: Quote
    cycle_start: date  # the cycle the account is in after this interval
    cycle_wh: int  # its energy after this interval
    periods_from: str | None  # BY_REGISTERS, BY_TIME, or None (no time-of-use)


def cycle_start_of(cycle: str | None, day: date) -> date:
    """The first day of the tariff cycle `day` lies in ("month", "year"; None: the month)."""
    return day.replace(month=1, day=1) if cycle == "year" else day.replace(day=1)


def period_deltas(before_raw: str | None, after_raw: tuple[int, int, int, int] | None
                  ) -> tuple[int, int, int, int] | None:
    """Wh per register period between two readings of the period registers (0.01 kWh), or None
    when either is missing or one went backwards."""
    if before_raw is None or after_raw is None:
        return None
    before = [int(x) for x in before_raw.split(",")]
    deltas = tuple((a - b) * 10 for a, b in zip(after_raw, before))
    return None if any(d < 0 for d in deltas) else deltas  # type: ignore[return-value]


def registers_to_periods(tariff, deltas: tuple[int, ...], total_wh: int,
                         month: int) -> dict[str, int] | None:
    """The register deltas as the tariff's period names (of `month`'s season), or None when they
    cannot be trusted (sum differs from the total step, or energy in a register the tariff has
    no period for)."""
    if sum(deltas) != total_wh:
        return None
    names = {p.name for p in _periods_on(tariff, month)}
    out: dict[str, int] = {}
    for aliases, wh in zip(REGISTER_PERIODS, deltas):
        name = next((a for a in aliases if a in names), None)
        if name is None:
            if wh:
                return None
            continue
        if wh:
            out[name] = out.get(name, 0) + wh
    return out


def periods_by_time(versions: list[TariffVersion], start_at: datetime, end_at: datetime,
                    wh: int) -> dict[str, int]:
    """Share `wh` used over [start_at, end_at) among the time-of-use periods in proportion to
    time: the interval is cut at each period boundary (local time) and each piece goes to the
    period of the tariff (version, season) in effect at its start."""
    cuts, day = [], start_at.astimezone(CHINA_TZ).date()
    last = end_at.astimezone(CHINA_TZ).date()
    while day <= last:
        midnight = starts_at(day)
        tariff = tariff_at(versions, midnight)
        for period in _periods_on(tariff, day.month):
            for r in period.ranges:
                cuts += [midnight + timedelta(minutes=r.start_min),
                         midnight + timedelta(minutes=r.end_min)]
        cuts.append(midnight)
        day += timedelta(days=1)
    out: dict[str, int] = {}
    for a, _b, part in split_interval(start_at, end_at, wh, cuts):
        local = a.astimezone(CHINA_TZ)
        minute = local.hour * 60 + local.minute
        tariff = tariff_at(versions, a)
        for period in _periods_on(tariff, local.month):
            if any(minute in r.minutes() for r in period.ranges):
                out[period.name] = out.get(period.name, 0) + part
                break
    return out


def _periods_on(tariff, month: int):
    season = next((s for s in tariff.seasons if month in s.months), None)
    return season.periods if season and season.periods else tariff.periods


def price_consumption(versions: list[TariffVersion], *, start_at: datetime | None,
                      end_at: datetime, energy_wh: int, cycle_start: date | None, cycle_wh: int,
                      uplift: bool, period_deltas_wh: tuple[int, ...] | None = None) -> Priced:
    """Price `energy_wh` used over [start_at, end_at) for an account whose tiered cycle began
    on `cycle_start` (None: not yet known, e.g. the first charge of an account opened mid-cycle
    with its `cycle_opening_wh`) with `cycle_wh` used since. Exact; rounds nothing."""
    start_at = start_at if start_at is not None and start_at < end_at else None
    first = start_at or end_at
    tariff = tariff_at(versions, first)
    cycle = getattr(tariff, "cycle", None)
    current = cycle_start_of(cycle, first.astimezone(CHINA_TZ).date())
    if cycle_start is not None and cycle_start < current:
        cycle_wh = 0  # a new cycle began since the last charge
    end_local = end_at.astimezone(CHINA_TZ)
    cuts = [] if start_at is None else sorted(
        c for c in [starts_at(v.effective_from) for v in versions]
        + _month_starts(start_at, end_at, CHINA_TZ) if start_at < c < end_at)
    if not cuts:  # one version, one month: registers when usable
        energy, periods_from = _energy_of(versions, tariff, start_at or end_at - timedelta(seconds=1),
                                          end_at, energy_wh, period_deltas_wh, end_local.month)
        quote = price_interval(tariff, cycle_wh, energy, uplift_kwh=_uplift(tariff, uplift),
                               month=end_local.month)
        cycle_wh += energy_wh
    else:  # across a month start or a price change: each piece by time, the cycle carried
        lines, periods_from = [], None
        for a, b, wh in split_interval(start_at, end_at, energy_wh, cuts):
            piece_tariff, local = tariff_at(versions, a), a.astimezone(CHINA_TZ)
            piece_cycle = getattr(piece_tariff, "cycle", None)
            if a == starts_at(local.date()) and local.day == 1 and \
                    (piece_cycle == "month" or (piece_cycle == "year" and local.month == 1)):
                cycle_wh = 0
            energy, from_ = _energy_of(versions, piece_tariff, a, b, wh, None, local.month)
            periods_from = periods_from or from_
            lines += price_interval(piece_tariff, cycle_wh, energy,
                                    uplift_kwh=_uplift(piece_tariff, uplift),
                                    month=local.month).lines
            cycle_wh += wh
        quote = make_quote(lines)
    end_tariff = tariff_at(versions, end_at)
    new_start = max(current, cycle_start_of(getattr(end_tariff, "cycle", None), end_local.date()))
    return Priced(quote, new_start, cycle_wh, periods_from)


def _uplift(tariff, uplift: bool):
    return getattr(tariff, "bound_uplift_kwh", 0) if uplift else 0


def _energy_of(versions, tariff, start_at: datetime, end_at: datetime, energy_wh: int,
               period_deltas_wh: tuple[int, ...] | None, month: int):
    """(energy as the tariff prices it, where its periods came from)."""
    if not isinstance(tariff, (TouTariff, TieredTouTariff)):
        return energy_wh, None
    if period_deltas_wh is not None:
        energy = registers_to_periods(tariff, period_deltas_wh, energy_wh, month)
        if energy is not None:
            return energy, BY_REGISTERS
    return periods_by_time(versions, start_at, end_at, energy_wh), BY_TIME


def describe(priced: Priced) -> str:
    """A ledger memo: each line's energy, tier and period, price; and where periods came from."""
    parts = []
    for line in priced.quote.lines:
        label = "".join(x for x in (f"第{line.tier}档 " if line.tier else "",
                                    f"{line.period} " if line.period else ""))
        parts.append(f"{label}{line.energy_wh} Wh × {line.price_yuan_per_kwh}")
    text = "; ".join(parts) or "0 Wh"
    if priced.periods_from == BY_TIME:
        text += " (periods shared by time: no usable period registers)"
    return text[:500]


def price_readings(tariff, before_wh: int, intervals: list, *, month: int,
                   uplift_kwh=0) -> Quote:
    """Price consecutive intervals (each an int Wh, or Wh per period) of one tariff version and
    one month, exactly as pricing each with `price_interval` in turn and summing (the lines may
    be grouped differently, the exact total is the same): consecutive intervals inside one tier
    are priced together, and an interval crossing a tier bound alone. For batches (a day of
    hourly readings); the caller splits at version changes and cycle starts."""
    bounds = _tier_bounds(tariff, month, uplift_kwh)
    bounds_known = hasattr(tariff, "tiers")
    at_bound = set(bounds)
    lines, group, group_wh, used = [], [], 0, before_wh
    k = bisect_right(bounds, used)  # bounds[k] is the first bound above `used`

    prices = _group_prices(tariff, month)

    def flush():
        nonlocal group, group_wh
        if group:  # inside one tier: each Wh at its period's price (plus the tier's surcharge)
            tier = bisect_right(bounds, used - group_wh)
            price_of = prices[min(tier, len(prices) - 1)]
            energy = _merge(group)
            if isinstance(energy, Mapping):
                unknown = [name for name in energy if name not in price_of]
                if unknown:  # let the engine say what is wrong
                    price_interval(tariff, used - group_wh, energy, month=month)
                lines.extend(QuoteLine(wh, price_of[name], energy_cost(wh, price_of[name]),
                                       tier + 1 if bounds_known else None, name)
                             for name, wh in energy.items() if wh)
            else:
                lines.append(QuoteLine(energy, price_of[None], energy_cost(energy, price_of[None]),
                                       tier + 1 if bounds_known else None, None))
        group, group_wh = [], 0

    per_period = bool(intervals) and isinstance(intervals[0], Mapping)
    for energy in intervals:
        wh = sum(energy.values()) if per_period else energy
        if not wh:
            continue
        if group and used in at_bound:  # the group filled its tier exactly: a new group
            flush()
        end = used + wh
        if k < len(bounds) and bounds[k] < end:  # crosses a bound inside: priced alone
            flush()
            lines.extend(price_interval(tariff, used, energy, uplift_kwh=uplift_kwh,
                                        month=month).lines)
            used = end
            k = bisect_right(bounds, used)
            continue
        group.append(energy)
        group_wh += wh
        used = end
        while k < len(bounds) and bounds[k] <= used:
            k += 1
    flush()
    exact = sum((line.amount_yuan for line in lines), Decimal(0))
    return Quote(exact_yuan=exact, charge_fen=to_fen(exact), lines=lines)


_bounds_cache: dict[tuple[int, int, str], tuple[object, list[int]]] = {}


def _tier_bounds(tariff, month: int, uplift_kwh) -> list[int]:
    key = (id(tariff), month, str(uplift_kwh))
    cached = _bounds_cache.get(key)
    if cached is not None and cached[0] is tariff:
        return cached[1]
    bounds = _compute_tier_bounds(tariff, month, uplift_kwh)
    _bounds_cache[key] = (tariff, bounds)
    return bounds


def _compute_tier_bounds(tariff, month: int, uplift_kwh) -> list[int]:
    if not hasattr(tariff, "tiers"):
        return []
    season = next((s for s in getattr(tariff, "seasons", ()) if month in s.months), None)
    bounds = season.tier_bounds_wh if season and season.tier_bounds_wh else \
        [t.up_to_wh for t in tariff.tiers]
    uplift_wh = int(Decimal(str(uplift_kwh)) * 1000)
    return sorted(b + uplift_wh for b in bounds if b is not None)


_prices_cache: dict[tuple[int, int], tuple[object, list[dict]]] = {}


def _group_prices(tariff, month: int) -> list[dict]:
    """Per tier (one entry for untiered tariffs): the price of each period name (None: the
    whole energy, for flat and tiered tariffs), as `price_interval` would charge it."""
    key = (id(tariff), month)
    cached = _prices_cache.get(key)
    if cached is not None and cached[0] is tariff:
        return cached[1]
    kind = tariff.kind
    if kind == "flat":
        prices = [{None: tariff.price_yuan_per_kwh}]
    elif kind == "tiered":
        prices = [{None: tier.price_yuan_per_kwh} for tier in tariff.tiers]
    else:
        periods = _periods_on(tariff, month)
        adds = [tier.add_yuan_per_kwh for tier in tariff.tiers] if kind == "tiered_tou" else [0]
        prices = [{p.name: p.price_yuan_per_kwh + add for p in periods} for add in adds]
    _prices_cache[key] = (tariff, prices)
    return prices


def _merge(group: list):
    if not isinstance(group[0], Mapping):
        return sum(group)
    out: dict[str, int] = {}
    for energy in group:
        for name, wh in energy.items():
            out[name] = out.get(name, 0) + wh
    return out
