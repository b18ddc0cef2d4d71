"""`price_readings` / `readings_cost` (a batch of intervals priced in integers) against the
worker's way, `price_interval` interval by interval with Decimals: the same exact total, the same
Wh per tier and period, and the same refusals, for every kind of tariff."""

from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from app.billing.pricing import price_readings, readings_cost
from app.money import energy_cost, to_fen
from app.tariffs import (FlatTariff, Period, TariffError, TimeRange, TouTariff, load_tariff,
                         parse_tariff, price_interval)
from app.tariffs.pricing import price_table

EXAMPLES = Path(__file__).parent.parent / "tariffs" / "examples"
BEIJING = load_tariff((EXAMPLES / "beijing_tiered.json").read_text())
ZHEJIANG = load_tariff((EXAMPLES / "zhejiang_tiered_tou.json").read_text())
SEASONAL = load_tariff((EXAMPLES / "seasonal_tiered.json").read_text())
THREE = load_tariff((EXAMPLES / "tou_three_periods.json").read_text())
FLAT = load_tariff((EXAMPLES / "flat.json").read_text())
# Tiered + time-of-use with small bounds (many hours cross one), three periods, and a summer
# whose bounds differ: every branch of the batch pricing.
SMALL = parse_tariff({
    "kind": "tiered_tou", "cycle": "month", "bound_uplift_kwh": "0.5",
    "tiers": [{"up_to_kwh": 1, "add": "0"}, {"up_to_kwh": "2.5", "add": "0.0500"},
              {"up_to_kwh": 4, "add": "0.1"}, {"up_to_kwh": None, "add": "0.3000"}],
    "periods": [{"name": "peak", "from": "08:00", "to": "12:00", "price": "0.6123"},
                {"name": "flat", "from": "12:00", "to": "22:00", "price": "0.5001"},
                {"name": "valley", "from": "22:00", "to": "08:00", "price": "0.2887"}],
    "seasons": [{"name": "summer", "months": [7, 8], "tiers_up_to_kwh": ["0.7", 2, 5, None]}]})
PROPERTY = settings(max_examples=150, deadline=None, database=None)


def one_by_one(tariff, before_wh, intervals, month, uplift_kwh=0):
    """(exact total, Wh by (tier, period)) pricing each interval with `price_interval`."""
    exact, wh, used = Decimal(0), Counter(), before_wh
    for energy in intervals:
        quote = price_interval(tariff, used, energy, month=month, uplift_kwh=uplift_kwh)
        exact += quote.exact_yuan
        for line in quote.lines:
            wh[line.tier, line.period] += line.energy_wh
        used += sum(energy.values()) if isinstance(energy, dict) else energy
    return exact, wh


def check(tariff, before_wh, intervals, month, uplift_kwh=0):
    exact, wh = one_by_one(tariff, before_wh, intervals, month, uplift_kwh)
    quote = price_readings(tariff, before_wh, intervals, month=month, uplift_kwh=uplift_kwh)
    assert quote.exact_yuan == exact
    assert quote.charge_fen == to_fen(exact)
    assert sum((line.amount_yuan for line in quote.lines), Decimal(0)) == exact
    assert all(line.amount_yuan == energy_cost(line.energy_wh, line.price_yuan_per_kwh)
               for line in quote.lines)
    assert Counter({(line.tier, line.period): line.energy_wh for line in quote.lines}) == \
        +wh  # the same Wh in each tier and period, to the Wh
    assert readings_cost(tariff, before_wh, intervals, month=month, uplift_kwh=uplift_kwh) == \
        (sum(wh.values()), exact)


small_hour = st.dictionaries(st.sampled_from(["peak", "flat", "valley"]),
                             st.integers(0, 1500), max_size=3)


@PROPERTY
@given(st.integers(0, 6_000), st.lists(small_hour, max_size=24), st.sampled_from([1, 7, 11]),
       st.sampled_from([0, "0.5", Decimal("1.5")]))
def test_tiered_time_of_use_with_seasons_and_uplift(before_wh, hours, month, uplift):
    check(SMALL, before_wh, hours, month, uplift)


@PROPERTY
@given(st.integers(0, 700_000), st.lists(st.integers(0, 150_000), max_size=24),
       st.integers(1, 12), st.sampled_from([0, 100, "100"]))
def test_tiered_with_seasons_and_uplift(before_wh, hours, month, uplift):
    check(SEASONAL, before_wh, hours, month)
    check(BEIJING, before_wh, hours, month, uplift)


@PROPERTY
@given(st.integers(0, 6_000_000), st.lists(
    st.fixed_dictionaries({}, optional={"peak": st.integers(0, 300_000),
                                        "valley": st.integers(0, 300_000)}), max_size=24))
def test_zhejiang_day(before_wh, hours):
    check(ZHEJIANG, before_wh, hours, 11)


@PROPERTY
@given(st.integers(0, 10**6), st.lists(st.integers(0, 10**5), max_size=24))
def test_flat(before_wh, hours):
    check(FLAT, before_wh, hours, 3)


@PROPERTY
@given(st.lists(st.dictionaries(st.sampled_from(["spike", "peak", "flat", "valley"]),
                                st.integers(0, 5000), max_size=4), max_size=24),
       st.sampled_from([1, 7, 8, 12]))
def test_time_of_use_refuses_what_one_by_one_refuses(hours, month):
    try:
        exact, _ = one_by_one(THREE, 0, hours, month)
    except TariffError:  # a spike outside summer, even of 0 Wh
        with pytest.raises(TariffError):
            price_readings(THREE, 0, hours, month=month)
        with pytest.raises(TariffError):
            readings_cost(THREE, 0, hours, month=month)
        return
    check(THREE, 0, hours, month)


@pytest.mark.parametrize("tariff, before_wh, intervals", [
    (BEIJING, 0, [{"peak": 100}]),  # periods for a tariff without any
    (ZHEJIANG, 0, [100]),  # a total for a tariff that prices by period
    (ZHEJIANG, 0, [{"peak": 100}, 100]),  # mixed
    (BEIJING, 0, [100, -5]),  # not whole Wh ≥ 0
    (BEIJING, 0, [100, 1.5]),
    (ZHEJIANG, 0, [{"peak": -1, "valley": 5}]),
    (BEIJING, -1, [100]),
    (BEIJING, True, [100]),
])
def test_what_price_interval_refuses_is_refused(tariff, before_wh, intervals):
    with pytest.raises(TariffError):
        price_readings(tariff, before_wh, intervals, month=11)
    with pytest.raises(TariffError):
        readings_cost(tariff, before_wh, intervals, month=11)


def test_a_month_is_required_where_seasons_depend_on_it():
    with pytest.raises(TariffError):
        price_readings(SEASONAL, 0, [100], month=None)
    with pytest.raises(TariffError):
        price_readings(SEASONAL, 0, [100], month=13)


def test_no_intervals_cost_nothing():
    assert readings_cost(ZHEJIANG, 0, [], month=11) == (0, Decimal(0))
    assert price_readings(BEIJING, 0, [], month=11).exact_yuan == 0


@PROPERTY
@given(st.integers(0, 10**7), st.decimals("0", "9.99999999", places=8))
def test_price_table_units_are_exact_for_any_places(wh, price):
    """A price with more than four places (a tariff built by hand, not by the schema) still
    costs exactly `energy_cost`: the table's unit follows the finest price."""
    tariff = TouTariff(periods=(Period("all", price, (TimeRange(0, 1440),)),))
    table = price_table(tariff, None)
    assert table.yuan(wh * table.units[0][0]) == energy_cost(wh, price)
    flat = price_table(FlatTariff(price))
    assert flat.yuan(wh * flat.units[0][0]) == energy_cost(wh, price)
