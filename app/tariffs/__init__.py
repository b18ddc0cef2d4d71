"""Tariffs: flat, tiered (阶梯), time-of-use (峰谷) and tiered + time-of-use, as data and as
pure pricing. The JSON form is documented in docs/tariffs.md; `python -m app.tariffs.quote`
prices a usage from the command line."""

from app.tariffs.model import (
    FlatTariff,
    Period,
    Season,
    Tariff,
    TariffError,
    TariffVersion,
    Tier,
    TieredTariff,
    TieredTouTariff,
    TimeRange,
    TouTariff,
    Usage,
)
from app.tariffs.pricing import (
    CHINA_TZ,
    IntervalPart,
    Quote,
    QuoteLine,
    allocate,
    price_interval,
    price_span,
    quote_usage,
    split_at_versions,
    split_interval,
    split_tiers,
    tariff_at,
    version_at,
)
from app.tariffs.schema import load_tariff, load_usage, parse_tariff, parse_usage

__all__ = [
    "CHINA_TZ", "FlatTariff", "IntervalPart", "Period", "Quote", "QuoteLine", "Season", "Tariff",
    "TariffError", "TariffVersion", "Tier", "TieredTariff", "TieredTouTariff", "TimeRange",
    "TouTariff", "Usage", "allocate", "load_tariff", "load_usage", "parse_tariff", "parse_usage",
    "price_interval", "price_span", "quote_usage", "split_at_versions", "split_interval",
    "split_tiers", "tariff_at", "version_at",
]
