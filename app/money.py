"""Money: integer fen for balances and ledger amounts, Decimal yuan for prices.

Every conversion between yuan and fen, and the one rounding rule, live here. No float ever
touches money: prices are `Decimal` with four places of a yuan (0.4883 元/kWh), energy is an
integer number of watt-hours, and posted amounts are integer fen.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

PRICE_PLACES = Decimal("0.0001")
FEN_PER_YUAN = 100
WH_PER_KWH = 1000


def to_fen(yuan: Decimal) -> int:
    """Round an exact yuan amount to whole fen, half up (away from zero on .5).

    This is the project's only rounding rule for money. Charges are posted so that the sum of
    everything posted for a meter equals `to_fen(exact running total)`; see `post_increment`.
    """
    return int((yuan * FEN_PER_YUAN).quantize(Decimal(1), rounding=ROUND_HALF_UP))


E7 = Decimal(10) ** 7  # exact running totals are kept as integers of 1e-7 yuan


def e7_to_fen(exact_e7: int) -> int:
    """`to_fen` of an exact amount kept as an integer of 1e-7 yuan."""
    return to_fen(Decimal(exact_e7) / E7)


def e7_to_fen_sql(exact_e7):
    """`e7_to_fen` as a SQL expression, for sums over many rows in the database: the same rule
    (half up) for the amounts it is used on, which are never below zero (a meter's exact
    running total). `//` is integer division on SQLite and PostgreSQL alike; a test checks the
    two renderings agree, value by value, on both."""
    return (exact_e7 + 50_000) // 100_000


def energy_cost(energy_wh: int, price_yuan_per_kwh: Decimal) -> Decimal:
    """The exact cost in yuan of `energy_wh` watt-hours at a price per kWh. Never rounded."""
    return Decimal(energy_wh) * price_yuan_per_kwh / WH_PER_KWH


def post_increment(exact_total_before: Decimal, exact_amount: Decimal) -> int:
    """Whole fen to post now so that everything posted equals `to_fen` of the exact running total.

    The sub-fen remainder is carried forward inside the exact total: posting 0.004 yuan three
    times posts 0, 1, 0 fen (0.4 → 0, 0.8 → 1, 1.2 → 1 fen in all), never 0, 0, 0.
    """
    return to_fen(exact_total_before + exact_amount) - to_fen(exact_total_before)


# What a person types as an amount or a price: ASCII digits with an optional decimal part.
# Decimal() alone also takes "1e2", "1_000", "NaN" and other scripts' digits ("١٠٠").
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def _non_negative_decimal(text: str | Decimal, what: str) -> Decimal:
    if isinstance(text, Decimal):
        raw = str(text)
    else:
        # NFKC folds full-width digits and point (１００．５, a Chinese keyboard's) to ASCII
        raw = unicodedata.normalize("NFKC", str(text)).strip()
        if raw.startswith("-") and _PLAIN_DECIMAL.fullmatch(raw[1:]):
            raise ValueError(f"{what} must be zero or more: {text!r}")
        if not _PLAIN_DECIMAL.fullmatch(raw):
            raise ValueError(f"{what} is not a number: {text!r}")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ValueError(f"{what} is not a number: {text!r}") from exc
    if not value.is_finite() or value < 0:
        raise ValueError(f"{what} must be zero or more: {text!r}")
    return value


def parse_price(text: str | Decimal) -> Decimal:
    """A price in 元/kWh with at most four decimal places; raises ValueError otherwise."""
    price = _non_negative_decimal(text, "price")
    if price != price.quantize(PRICE_PLACES):
        raise ValueError(f"price has more than four decimal places: {text!r}")
    return price.quantize(PRICE_PLACES)


def fen_to_yuan_str(fen: int) -> str:
    """Exact yuan string with two decimals, as Alipay's `total_amount` wants: 1000 → "10.00"."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(int(fen)), FEN_PER_YUAN)
    return f"{sign}{whole}.{part:02d}"


def yuan_str_to_fen(text: str) -> int:
    """Exact fen from a yuan amount ("10.00", "10.1", "10"); ValueError if negative,
    non-numeric or finer than a fen."""
    fen = _non_negative_decimal(text, "amount") * FEN_PER_YUAN
    if fen != fen.to_integral_value():
        raise ValueError(f"amount is finer than a fen: {text!r}")
    return int(fen)
