"""Properties of pricing a meter's readings: where the readings fall does not change what is
posted beyond the one final rounding, and no charge is ever negative."""

import datetime as dt
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings, strategies as st

from app.billing.pricing import price_consumption
from app.money import post_increment, to_fen
from app.tariffs import TariffVersion, load_tariff

EXAMPLES = Path(__file__).parent.parent / "tariffs" / "examples"
START = dt.datetime(2026, 11, 4, 16, tzinfo=dt.timezone.utc)  # local midnight, 5 November
TARIFFS = {
    "flat": '{"kind": "flat", "price": "0.5583"}',
    "beijing": (EXAMPLES / "beijing_tiered.json").read_text(),
    "tou": '{"kind": "tou", "periods": [{"name": "peak", "from": "08:00", "to": "22:00", '
           '"price": "0.568"}, {"name": "valley", "from": "22:00", "to": "08:00", '
           '"price": "0.288"}]}',
}


def post_all(versions, cuts_s, energy_at, deltas_at=None, cycle_wh=0):
    """Post the intervals between consecutive readings (seconds after START); returns the fen
    posted in all, the exact total, and every charge."""
    exact, charges, cycle_start = Decimal(0), [], None
    for a, b in zip(cuts_s, cuts_s[1:]):
        wh = energy_at(b) - energy_at(a)
        if wh <= 0:
            continue
        deltas = tuple(y - x for x, y in zip(deltas_at(a), deltas_at(b))) if deltas_at else None
        priced = price_consumption(versions, start_at=START + dt.timedelta(seconds=a),
                                   end_at=START + dt.timedelta(seconds=b), energy_wh=wh,
                                   cycle_start=cycle_start, cycle_wh=cycle_wh, uplift=False,
                                   period_deltas_wh=deltas)
        charges.append(post_increment(exact, priced.quote.exact_yuan))
        exact += priced.quote.exact_yuan
        cycle_start, cycle_wh = priced.cycle_start, priced.cycle_wh
    return sum(charges), exact, charges


DAY_S = 86_400
cuts = st.lists(st.integers(1, DAY_S - 1), max_size=30).map(lambda xs: [0, *sorted(set(xs)), DAY_S])


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["flat", "beijing"]), st.integers(0, 50_000), st.integers(0, 500_000),
       cuts)
def test_splitting_readings_anywhere_posts_the_same_fen(name, rate_wh_per_h, opening_wh, split):
    versions = [TariffVersion(dt.date(2020, 1, 1), load_tariff(TARIFFS[name]))]

    def energy_at(s):  # a register reading: whole Wh, rising with time
        return rate_wh_per_h * s // 3600

    whole, exact_whole, _ = post_all(versions, [0, DAY_S], energy_at, cycle_wh=opening_wh)
    parts, exact_parts, charges = post_all(versions, split, energy_at, cycle_wh=opening_wh)
    assert exact_parts == exact_whole and parts == whole == to_fen(exact_whole)
    assert all(c >= 0 for c in charges)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 3000)), min_size=24,
                max_size=24), cuts)
def test_time_of_use_by_registers_splits_without_changing_the_total(hourly, split):
    versions = [TariffVersion(dt.date(2020, 1, 1), load_tariff(TARIFFS["tou"]))]

    def deltas_at(s):  # spike, peak, flat, valley registers in Wh, rising hour by hour
        hours, frac = divmod(s, 3600)
        peak = sum(p for p, _ in hourly[:hours]) + (hourly[hours][0] * frac // 3600 if hours < 24 else 0)
        valley = sum(v for _, v in hourly[:hours]) + (hourly[hours][1] * frac // 3600 if hours < 24 else 0)
        return (0, peak, 0, valley)

    def energy_at(s):
        return sum(deltas_at(s))

    whole, exact_whole, _ = post_all(versions, [0, DAY_S], energy_at, deltas_at)
    parts, exact_parts, charges = post_all(versions, split, energy_at, deltas_at)
    assert exact_parts == exact_whole and parts == whole
    assert all(c >= 0 for c in charges)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 50_000), cuts)
def test_time_of_use_by_time_moves_at_most_a_few_wh_per_split(rate_wh_per_h, split):
    """Shared by time, each reading's periods round to the Wh: the exact total may move by at
    most one Wh at the price spread per split, and never below zero."""
    versions = [TariffVersion(dt.date(2020, 1, 1), load_tariff(TARIFFS["tou"]))]

    def energy_at(s):
        return rate_wh_per_h * s // 3600

    _, exact_whole, _ = post_all(versions, [0, DAY_S], energy_at)
    _, exact_parts, charges = post_all(versions, split, energy_at)
    spread = (Decimal("0.568") - Decimal("0.288")) / 1000
    assert abs(exact_parts - exact_whole) <= spread * 2 * len(split)
    assert all(c >= 0 for c in charges)


ZHEJIANG = load_tariff((EXAMPLES / "zhejiang_tiered_tou.json").read_text())
BEIJING = load_tariff(TARIFFS["beijing"])
hour = st.fixed_dictionaries({"peak": st.integers(0, 400_000), "valley": st.integers(0, 400_000)})


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 6_000_000), st.lists(hour, max_size=24))
def test_a_day_priced_in_one_go_equals_its_hours_priced_one_by_one(before_wh, hours):
    from app.billing.pricing import price_readings
    from app.tariffs import price_interval

    expected, used = Decimal(0), before_wh
    for energy in hours:
        expected += price_interval(ZHEJIANG, used, energy, month=11).exact_yuan
        used += sum(energy.values())
    assert price_readings(ZHEJIANG, before_wh, hours, month=11).exact_yuan == expected


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 500_000), st.lists(st.integers(0, 200_000), max_size=24))
def test_a_tiered_day_priced_in_one_go_equals_its_hours(before_wh, hours):
    from app.billing.pricing import price_readings
    from app.tariffs import price_interval

    expected, used = Decimal(0), before_wh
    for wh in hours:
        expected += price_interval(BEIJING, used, wh, month=11).exact_yuan
        used += wh
    assert price_readings(BEIJING, before_wh, hours, month=11).exact_yuan == expected


THREE = load_tariff((EXAMPLES / "tou_three_periods.json").read_text())
three_hour = st.dictionaries(st.sampled_from(["spike", "peak", "flat", "valley"]),
                             st.integers(1, 5000), max_size=4)


@settings(max_examples=100, deadline=None)
@given(st.lists(three_hour, max_size=24), st.sampled_from([1, 7, 8, 11]))
def test_a_seasonal_time_of_use_day_in_one_go_equals_its_hours(hours, month):
    from app.billing.pricing import price_readings
    from app.tariffs import TariffError, price_interval

    try:
        expected = sum((price_interval(THREE, 0, e, month=month).exact_yuan for e in hours),
                       Decimal(0))
    except TariffError:  # a spike outside summer: refused one by one, refused in one go
        try:
            price_readings(THREE, 0, hours, month=month)
        except TariffError:
            return
        raise AssertionError("price_readings accepted a period the month does not have")
    assert price_readings(THREE, 0, hours, month=month).exact_yuan == expected
