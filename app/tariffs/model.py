"""The tariff kinds as plain, immutable data: what `schema.parse_tariff` builds and `pricing` reads.

Units are in the names: energies and tier bounds are integer watt-hours (`*_wh`), prices are
`Decimal` yuan per kWh with four places (`*_yuan_per_kwh`), times of day are minutes after local
midnight (0..1440). Nothing here parses, validates or rounds; `schema.py` guarantees the
invariants each class states.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from app.money import WH_PER_KWH

KINDS = ("flat", "tiered", "tou", "tiered_tou")
CYCLES = ("month", "year")
MINUTES_PER_DAY = 24 * 60
MAX_PERIODS = 4  # 尖 峰 平 谷: spike, peak, flat, valley


class TariffError(ValueError):
    """A tariff, a usage or a pricing request that cannot be used; the message names the field,
    e.g. ``tiers[1].up_to_kwh: must be greater than tiers[0].up_to_kwh (240)``."""


@dataclass(frozen=True)
class Tier:
    """One step of a tiered tariff: energy of the cycle up to `up_to_wh` (inclusive; None for the
    last, open-ended tier) at `price_yuan_per_kwh` (tiered) or with `add_yuan_per_kwh` on top of
    the period price (tiered_tou)."""

    up_to_wh: int | None
    price_yuan_per_kwh: Decimal = Decimal(0)
    add_yuan_per_kwh: Decimal = Decimal(0)


@dataclass(frozen=True)
class TimeRange:
    """[start_min, end_min) in minutes after local midnight; end_min < start_min spans midnight,
    end_min == 1440 is 24:00."""

    start_min: int
    end_min: int

    def minutes(self) -> range | list[int]:
        if self.end_min > self.start_min:
            return range(self.start_min, self.end_min)
        return [*range(self.start_min, MINUTES_PER_DAY), *range(0, self.end_min)]


@dataclass(frozen=True)
class Period:
    """A named time-of-use period (峰, 谷, ...) with its price and one or more daily ranges."""

    name: str
    price_yuan_per_kwh: Decimal
    ranges: tuple[TimeRange, ...]


@dataclass(frozen=True)
class Season:
    """Months (1..12) whose tier bounds and/or periods differ from the tariff's defaults.

    `tier_bounds_wh` has one bound per tier (the last None); `periods` replaces the tariff's
    periods entirely. Either is None when the season keeps the default."""

    name: str
    months: frozenset[int]
    tier_bounds_wh: tuple[int | None, ...] | None = None
    periods: tuple[Period, ...] | None = None


@dataclass(frozen=True)
class FlatTariff:
    price_yuan_per_kwh: Decimal
    kind: str = "flat"


@dataclass(frozen=True)
class TieredTariff:
    """阶梯电价: the price steps with the cycle's cumulative energy. `bound_uplift_wh` is what the
    tariff grants a 一户多人口 household on every finite bound; the caller decides who gets it."""

    cycle: str
    tiers: tuple[Tier, ...]
    seasons: tuple[Season, ...] = ()
    bound_uplift_wh: int = 0
    kind: str = "tiered"

    @property
    def bound_uplift_kwh(self) -> Decimal:
        return Decimal(self.bound_uplift_wh) / WH_PER_KWH


@dataclass(frozen=True)
class TouTariff:
    """峰谷/分时电价: named periods covering the day exactly once, each with its price."""

    periods: tuple[Period, ...]
    seasons: tuple[Season, ...] = ()
    kind: str = "tou"


@dataclass(frozen=True)
class TieredTouTariff:
    """阶梯 + 分时: the period's price plus the surcharge (`add_yuan_per_kwh`) of the tier the
    cycle's cumulative energy is in."""

    cycle: str
    tiers: tuple[Tier, ...]
    periods: tuple[Period, ...]
    seasons: tuple[Season, ...] = ()
    bound_uplift_wh: int = 0
    kind: str = "tiered_tou"

    @property
    def bound_uplift_kwh(self) -> Decimal:
        return Decimal(self.bound_uplift_wh) / WH_PER_KWH


Tariff = FlatTariff | TieredTariff | TouTariff | TieredTouTariff


@dataclass(frozen=True)
class Usage:
    """What to quote: energy already used in the cycle, and this usage, either as one total
    (`energy_wh`) or per period name (`period_wh`). `month` picks the season; `uplift_wh` raises
    every finite tier bound (一户多人口)."""

    before_wh: int
    energy_wh: int | None = None
    period_wh: dict[str, int] | None = None
    month: int | None = None
    uplift_wh: int = 0


@dataclass(frozen=True)
class TariffVersion:
    """A tariff in effect from local midnight (China time) of `effective_from` until the next
    version's `effective_from`."""

    effective_from: date
    tariff: Tariff
