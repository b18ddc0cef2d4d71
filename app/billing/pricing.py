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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from decimal import Decimal

from app.money import WH_PER_KWH, to_fen
from app.tariffs import (CHINA_TZ, Quote, QuoteLine, TariffError, TariffVersion, TouTariff,
                         TieredTouTariff, price_interval, split_interval, tariff_at)
from app.tariffs.pricing import PriceTable, _month_starts, make_quote, price_table, starts_at
from app.tariffs.schema import kwh_to_wh

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


def accrue_lines(accrued: str | None, priced: Priced | None, *, energy_wh: int = 0,
                 price: Decimal | None = None) -> str:
    """What an accrual of several readings was priced at, kept in one short text on the meter
    (`Meter.accrued_lines`) so that its one ledger entry can say it (`describe_accrued`): Wh per
    (tier, period, price), "tier|period|price|Wh" joined by ";", and ";T" once any reading's
    periods were shared by time. `priced`: a tariff reading's pricing; else a flat reading of
    `energy_wh` at `price`."""
    wh_of: dict[tuple[str, str, str], int] = {}
    by_time = False
    for part in (accrued or "").split(";"):
        if part == "T":
            by_time = True
        elif part:
            tier, period, unit, wh = part.split("|")
            wh_of[(tier, period, unit)] = wh_of.get((tier, period, unit), 0) + int(wh)
    if priced is None:
        lines = [("", "", str(price), energy_wh)]
    else:
        by_time = by_time or priced.periods_from == BY_TIME
        lines = [(str(line.tier or ""), _clean(line.period), str(line.price_yuan_per_kwh),
                  line.energy_wh) for line in priced.quote.lines]
    for tier, period, unit, wh in lines:
        wh_of[(tier, period, unit)] = wh_of.get((tier, period, unit), 0) + wh
    text = ";".join(f"{t}|{p}|{u}|{wh}" for (t, p, u), wh in wh_of.items())
    return text + (";T" if by_time else "")


def _clean(name: str | None) -> str:
    return (name or "").replace("|", "/").replace(";", ",")


def describe_accrued(accrued: str | None) -> str:
    """A ledger memo for an accrual (`accrue_lines`), in `describe`'s words: each tier and
    period's energy and price; a flat price with its unit."""
    parts, by_time = [], False
    for part in (accrued or "").split(";"):
        if part == "T":
            by_time = True
        elif part:
            tier, period, unit, wh = part.split("|")
            if not tier and not period:
                parts.append(f"{wh} Wh × {unit} 元/kWh")
            else:
                label = "".join(x for x in (f"第{tier}档 " if tier else "",
                                            f"{period} " if period else ""))
                parts.append(f"{label}{wh} Wh × {unit}")
    text = "; ".join(parts) or "0 Wh"
    if by_time:
        text += " (periods shared by time: no usable period registers)"
    return text[:500]


def price_readings(tariff, before_wh: int, intervals: Sequence, *, month: int,
                   uplift_kwh=0) -> Quote:
    """Price consecutive intervals (each an int Wh, or a mapping of period name to Wh; whole
    Wh ≥ 0, as register differences are) of one tariff version and one month, starting with
    `before_wh` used in the cycle: exactly as pricing each with `price_interval` in turn and
    summing. For batches (a day of hourly readings); the caller splits at version changes and
    cycle starts.

    Exact, in integers (`app.tariffs.pricing.PriceTable`): energy inside one tier only adds to
    that tier's Wh per period, whatever the hour (the price of a Wh depends on its tier and
    period, nothing else), so a batch inside one tier is one sum per period; an interval that
    crosses a tier bound is split by the rule of `price_interval` itself (`PriceTable.split`).
    The cost is Σ Wh × price over tiers and periods, integers of 1e-7 元 for four-place prices.
    The quote has one line per tier and period used (`price_interval` one by one gives the same
    Wh and amounts in more lines). Raises `TariffError` where pricing the intervals one by one
    would: the wrong form of energy, a period the month does not have, Wh below 0."""
    table = _table(tariff, month, uplift_kwh)
    return _quote(table, _tally(table, before_wh, intervals))


def readings_cost(tariff, before_wh: int, intervals: Sequence, *, month: int,
                  uplift_kwh=0) -> tuple[int, Decimal]:
    """(energy in Wh, exact cost in 元) of `intervals`: the same as `price_readings` (the same
    count, exactly), without building its lines; for a batch that posts one total."""
    table = _table(tariff, month, uplift_kwh)
    energy = amount = 0
    for tier, row in _tally(table, before_wh, intervals).items():
        for wh, unit in zip(row, table.units[tier]):
            energy += wh
            amount += wh * unit
    return energy, table.yuan(amount)


def _tally(table: PriceTable, before_wh: int, intervals: Sequence) -> dict[int, list[int]]:
    """Wh per column of each tier (row index of `table`) that `intervals` used after `before_wh`
    use (see `price_readings`)."""
    finite = table.finite_wh
    k = bisect_right(finite, before_wh) if type(before_wh) is int else 0
    if table.by_period:
        wh_of = dict.fromkeys(table.names, 0)
        try:
            for energy in intervals:
                for name, part in energy.items():
                    if part < 0:
                        return _walk(table, before_wh, intervals)  # refused there
                    wh_of[name] += part
        except (AttributeError, KeyError, TypeError):  # not Wh per period of this month
            return _walk(table, before_wh, intervals)
        per_column = list(wh_of.values())
        total = sum(per_column)
    else:
        try:
            total = sum(intervals)
            if intervals and min(intervals) < 0:
                return _walk(table, before_wh, intervals)  # refused there
        except TypeError:
            return _walk(table, before_wh, intervals)
        per_column = [total]
    if type(total) is not int or type(before_wh) is not int or before_wh < 0 or \
            (k < len(finite) and before_wh + total > finite[k]):
        return _walk(table, before_wh, intervals)  # crosses a tier bound (or needs checking)
    return {k: per_column}  # all inside tier k


def _walk(table: PriceTable, before_wh: int, intervals: Sequence) -> dict[int, list[int]]:
    """`price_readings` interval by interval: each checked as `price_interval` checks it, each
    inside one tier added to that tier's count, each crossing a bound split by
    `PriceTable.split`."""
    per_period = table.by_period

    def check(energy) -> None:  # what the loop does not take: price_interval says why
        price_interval(table.tariff, before_wh, energy, month=table.month,
                       uplift_kwh=Decimal(table.uplift_wh) / WH_PER_KWH)
        raise TariffError(f"intervals: each must be {'Wh per period' if per_period else 'Wh'}, "
                          f"got {energy!r}")  # e.g. an int subclass price_interval accepts

    column = {name: j for j, name in enumerate(table.names)}
    finite = table.finite_wh
    count = len(finite)
    wh_at = [[0] * len(table.names) for _ in table.units]  # Wh per [tier][column]
    used = before_wh
    if type(used) is not int or used < 0:
        check(0)
    k = bisect_right(finite, used)  # the tier of the next Wh: finite[k] is the first bound above
    for energy in intervals:
        if per_period:
            if not isinstance(energy, Mapping):
                check(energy)
            wh = 0
            for name, part in energy.items():
                if name not in column or type(part) is not int or part < 0:
                    check(energy)
                wh += part
        else:
            wh = energy
            if type(wh) is not int or wh < 0:
                check(energy)
        if not wh:
            continue
        end = used + wh
        if k < count and finite[k] < end:  # crosses a tier bound: split by price_interval's rule
            for tier, j, part in table.split(used, energy):
                wh_at[tier][j] += part
            used = end
            k = bisect_right(finite, used)
            continue
        row = wh_at[k]
        if per_period:
            for name, part in energy.items():
                row[column[name]] += part
        else:
            row[0] += wh
        used = end
        while k < count and finite[k] <= used:
            k += 1
    return dict(enumerate(wh_at))


def _quote(table: PriceTable, wh_at: dict[int, list[int]]) -> Quote:
    """The quote of Wh per column of each tier: one line each, amounts and total exact."""
    lines, total = [], 0
    tiered, names = table.tiered, table.names
    for tier in sorted(wh_at):
        units, prices = table.units[tier], table.prices[tier]
        for j, wh in enumerate(wh_at[tier]):
            if wh:
                amount = wh * units[j]
                total += amount
                lines.append(QuoteLine(wh, prices[j], table.yuan(amount),
                                       tier + 1 if tiered else None, names[j]))
    exact = table.yuan(total)
    return Quote(exact_yuan=exact, charge_fen=to_fen(exact), lines=lines)


_table_cache: dict[tuple, PriceTable] = {}


def _table(tariff, month: int, uplift_kwh) -> PriceTable:
    """`price_table` of the tariff, month and uplift (in kWh, as `price_interval` takes it)."""
    key = (id(tariff), month, type(uplift_kwh), uplift_kwh)
    table = _table_cache.get(key)
    if table is None or table.tariff is not tariff:
        table = price_table(tariff, month, kwh_to_wh(uplift_kwh, "uplift_kwh"))
        if len(_table_cache) >= 1024:  # tariffs come and go with their versions: keep it small
            _table_cache.clear()
        _table_cache[key] = table
    return table
