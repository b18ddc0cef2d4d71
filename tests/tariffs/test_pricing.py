"""Quotes: published tariffs to the fen, the tiered + time-of-use allocation rule, versions,
and the properties every quote keeps (exact lines, never negative, additive, monotonic)."""

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.money import to_fen
from app.tariffs import (
    FlatTariff,
    Period,
    TariffError,
    TariffVersion,
    Tier,
    TieredTariff,
    TieredTouTariff,
    TimeRange,
    TouTariff,
    allocate,
    load_tariff,
    parse_tariff,
    price_interval,
    price_span,
    split_at_versions,
    split_interval,
    tariff_at,
)

EXAMPLES = Path(__file__).parent / "examples"
BEIJING = load_tariff((EXAMPLES / "beijing_tiered.json").read_text())
ZHEJIANG = load_tariff((EXAMPLES / "zhejiang_tiered_tou.json").read_text())
SEASONAL = load_tariff((EXAMPLES / "seasonal_tiered.json").read_text())
THREE_PERIODS = load_tariff((EXAMPLES / "tou_three_periods.json").read_text())
PEAK_VALLEY = parse_tariff({"kind": "tou", "periods": [
    {"name": "peak", "from": "08:00", "to": "22:00", "price": "0.568"},
    {"name": "valley", "from": "22:00", "to": "08:00", "price": "0.288"}]})
CST = timezone(timedelta(hours=8))
PROPERTY = settings(max_examples=150, deadline=None, database=None)


def kwh(text):
    return int(Decimal(text) * 1000)


def summary(quote):
    return [(line.tier, line.period, line.energy_wh, str(line.price_yuan_per_kwh))
            for line in quote.lines]


@pytest.mark.parametrize("before, used, exact, fen, tiers", [
    ("0", "240", "117.192", 11719, [(1, "240")]),
    ("0", "241", "117.7303", 11773, [(1, "240"), (2, "1")]),
    ("0", "400", "203.32", 20332, [(1, "240"), (2, "160")]),
    ("0", "401", "204.1083", 20411, [(1, "240"), (2, "160"), (3, "1")]),
    ("0", "300", "149.49", 14949, [(1, "240"), (2, "60")]),
    ("200", "100", "51.83", 5183, [(1, "40"), (2, "60")]),
    ("239", "2", "1.0266", 103, [(1, "1"), (2, "1")]),
    ("240", "1", "0.5383", 54, [(2, "1")]),
    ("239.999", "0.002", "0.0010266", 0, [(1, "0.001"), (2, "0.001")]),
    ("350", "100", "66.33", 6633, [(2, "50"), (3, "50")]),
    ("1000", "10", "7.883", 788, [(3, "10")]),
    ("0", "0", "0", 0, []),
])
def test_beijing_monthly_tiers(before, used, exact, fen, tiers):
    quote = price_interval(BEIJING, kwh(before), kwh(used))
    assert quote.exact_yuan == Decimal(exact) and quote.charge_fen == fen
    assert [(line.tier, line.energy_wh) for line in quote.lines] == [(t, kwh(k)) for t, k in tiers]


@pytest.mark.parametrize("uplift, used, tiers", [
    ("100", "340", [(1, "340")]),
    ("100", "341", [(1, "340"), (2, "1")]),
    ("100", "501", [(1, "340"), (2, "160"), (3, "1")]),
    ("50.5", "291", [(1, "290.5"), (2, "0.5")]),
])
def test_uplift_raises_every_finite_bound(uplift, used, tiers):
    quote = price_interval(BEIJING, 0, kwh(used), uplift_kwh=uplift)
    assert [(line.tier, line.energy_wh) for line in quote.lines] == [(t, kwh(k)) for t, k in tiers]


def test_the_tariffs_own_uplift_is_what_a_multi_person_household_gets():
    quote = price_interval(BEIJING, 0, kwh("340"), uplift_kwh=BEIJING.bound_uplift_kwh)
    assert quote.exact_yuan == Decimal("166.022")


@pytest.mark.parametrize("month, exact", [
    (7, "152.88"),   # summer: 260 kWh all in tier 1 at 0.588
    (1, "155.88"),   # winter: 200 at 0.588 + 60 at 0.638
    (10, "152.88"),
    (11, "155.88"),
])
def test_seasonal_bounds_follow_the_month(month, exact):
    assert price_interval(SEASONAL, 0, kwh("260"), month=month).exact_yuan == Decimal(exact)


@pytest.mark.parametrize("before, periods, exact, lines", [
    ("0", {"peak": "100", "valley": "50"}, "71.2",
     [(1, "peak", "100", "0.5680"), (1, "valley", "50", "0.2880")]),
    ("2760", {"peak": "10"}, "6.18", [(2, "peak", "10", "0.6180")]),
    ("2759", {"valley": "2"}, "0.626", [(1, "valley", "1", "0.2880"), (2, "valley", "1", "0.3380")]),
    ("4800", {"valley": "10"}, "5.88", [(3, "valley", "10", "0.5880")]),
    ("2750", {"peak": "20"}, "11.86", [(1, "peak", "10", "0.5680"), (2, "peak", "10", "0.6180")]),
    ("2700", {"peak": "120.5", "valley": "80"}, "98.509",
     [(1, "peak", "36.06", "0.5680"), (1, "valley", "23.94", "0.2880"),
      (2, "peak", "84.44", "0.6180"), (2, "valley", "56.06", "0.3380")]),
    ("2700", {"peak": "1100", "valley": "1100"}, "1073.6",
     [(1, "peak", "30", "0.5680"), (1, "valley", "30", "0.2880"),
      (2, "peak", "1020", "0.6180"), (2, "valley", "1020", "0.3380"),
      (3, "peak", "50", "0.8680"), (3, "valley", "50", "0.5880")]),
])
def test_zhejiang_yearly_tiers_with_time_of_use(before, periods, exact, lines):
    quote = price_interval(ZHEJIANG, kwh(before), {n: kwh(k) for n, k in periods.items()})
    assert quote.exact_yuan == Decimal(exact)
    assert summary(quote) == [(t, p, kwh(k), price) for t, p, k, price in lines]


@pytest.mark.parametrize("tariff, month, periods, exact", [
    (PEAK_VALLEY, None, {"peak": "120.5", "valley": "80"}, "91.484"),
    (PEAK_VALLEY, None, {"valley": "10"}, "2.88"),
    (THREE_PERIODS, 1, {"peak": "40", "flat": "30", "valley": "20.25"}, "47.075"),
    (THREE_PERIODS, 7, {"spike": "10", "peak": "40", "flat": "30", "valley": "20.25"}, "55.075"),
])
def test_time_of_use_prices_each_period(tariff, month, periods, exact):
    quote = price_interval(tariff, 0, {n: kwh(k) for n, k in periods.items()}, month=month)
    assert quote.exact_yuan == Decimal(exact)


def test_a_valley_across_midnight_is_one_period():
    (valley,) = [p for p in PEAK_VALLEY.periods if p.name == "valley"]
    assert valley.ranges == (TimeRange(22 * 60, 8 * 60),)
    assert set(valley.ranges[0].minutes()) == set(range(22 * 60, 24 * 60)) | set(range(8 * 60))


def test_flat_has_one_line():
    quote = price_interval(FlatTariff(Decimal("0.5583")), 0, 12340)
    assert summary(quote) == [(None, None, 12340, "0.5583")] and quote.charge_fen == 689


@pytest.mark.parametrize("tier_wh, period_wh, rows", [
    ([60000, 140500], [120500, 80000], [[36060, 23940], [84440, 56060]]),
    ([1, 1], [1, 1], [[1, 0], [0, 1]]),        # a tie goes to the period listed first
    ([0, 3, 0], [1, 2], [[0, 0], [1, 2], [0, 0]]),
    ([2, 2, 2], [3, 3], [[1, 1], [1, 1], [1, 1]]),
    ([1, 2], [0, 3], [[0, 1], [0, 2]]),
])
def test_allocation_table(tier_wh, period_wh, rows):
    assert allocate(tier_wh, period_wh) == rows


REFUSALS = [
    (ZHEJIANG, 0, {"peak": 10, "shoulder": 5}, {},
     "usage.periods.shoulder: the tariff has no period 'shoulder' (it has peak, valley)"),
    (THREE_PERIODS, 0, {"spike": 10}, {"month": 1},
     "usage.periods.spike: the tariff has no period 'spike' in month 1 (it has peak, flat, valley)"),
    (PEAK_VALLEY, 0, 10, {}, "usage.kwh: a tou tariff prices by period; give periods (kWh per "
                             "period: peak, valley)"),
    (ZHEJIANG, 0, 10, {}, "usage.kwh: a tiered_tou tariff prices by period"),
    (BEIJING, 0, {"peak": 10}, {}, "usage.periods: a tiered tariff has no periods; give kwh"),
    (SEASONAL, 0, 10, {}, "usage.month: required: the tariff's seasons depend on the month"),
    (THREE_PERIODS, 0, {"peak": 1}, {}, "usage.month: required"),
    (SEASONAL, 0, 10, {"month": 0}, "usage.month: must be a month number from 1 to 12, got 0"),
    (BEIJING, -1, 10, {}, "usage.before_kwh: must be zero or more whole Wh, got -1"),
    (BEIJING, 0, -10, {}, "usage.kwh: must be zero or more whole Wh, got -10"),
    (BEIJING, 0, Decimal("1.5"), {}, "usage.kwh: must be zero or more whole Wh"),
    (PEAK_VALLEY, 0, {"peak": 1.5}, {}, "usage.periods.peak: must be zero or more whole Wh"),
    (BEIJING, 0, 10, {"uplift_kwh": "x"}, "uplift_kwh: not a number: 'x'"),
    (BEIJING, 0, 10, {"uplift_kwh": 0.5}, "uplift_kwh: write the number as a string"),
]


@pytest.mark.parametrize("tariff, before, wh, options, message", REFUSALS)
def test_usage_that_does_not_fit_the_tariff_is_refused(tariff, before, wh, options, message):
    with pytest.raises(TariffError) as refused:
        price_interval(tariff, before, wh, **options)
    assert str(refused.value).startswith(message)


# --- versions ------------------------------------------------------------------------------------

OLD, NEW = FlatTariff(Decimal("0.5000")), FlatTariff(Decimal("0.6000"))
VERSIONS = [TariffVersion(date(2024, 7, 1), NEW), TariffVersion(date(2024, 1, 1), OLD)]


@pytest.mark.parametrize("when, expected", [
    (date(2024, 1, 1), OLD),
    (date(2024, 6, 30), OLD),
    (date(2024, 7, 1), NEW),
    (datetime(2024, 6, 30, 15, 59, 59, tzinfo=timezone.utc), OLD),
    (datetime(2024, 6, 30, 16, 0, tzinfo=timezone.utc), NEW),  # 00:00 on 1 July in China
    (datetime(2030, 1, 1, tzinfo=CST), NEW),
])
def test_tariff_at(when, expected):
    assert tariff_at(VERSIONS, when) == expected


@pytest.mark.parametrize("versions, when, message", [
    (VERSIONS, date(2023, 12, 31), "versions: no tariff in effect on 2023-12-31 (the first is "
                                   "effective from 2024-01-01)"),
    (VERSIONS, datetime(2024, 7, 1), "when: must be timezone-aware"),
    ([], date(2024, 1, 1), "versions: no tariff version given"),
    (VERSIONS + [TariffVersion(date(2024, 7, 1), OLD)], date(2024, 8, 1),
     "versions: two versions effective from 2024-07-01"),
])
def test_tariff_at_refuses(versions, when, message):
    with pytest.raises(TariffError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        tariff_at(versions, when)


@pytest.mark.parametrize("start, end, energy, parts", [
    ((6, 30, 12), (7, 1, 12), 1000, [500, 500]),
    ((6, 30, 18), (7, 1, 2), 1000, [750, 250]),
    ((6, 30, 12), (7, 1, 12), 1001, [501, 500]),   # the cumulative share is rounded half up
    ((6, 30, 12), (7, 1, 12), {"peak": 3, "valley": 1}, [{"peak": 2, "valley": 1},
                                                         {"peak": 1, "valley": 0}]),
    ((7, 1, 0), (7, 1, 12), 1000, [1000]),         # starts on the change: nothing to split
    ((6, 30, 0), (7, 1, 0), 1000, [1000]),         # ends on it
])
def test_split_at_a_version_change_in_proportion_to_time(start, end, energy, parts):
    t0, t1 = datetime(2024, *start, tzinfo=CST), datetime(2024, *end, tzinfo=CST)
    split = split_at_versions(VERSIONS, t0, t1, energy)
    assert [p.energy for p in split] == parts
    assert split[0].start_at == t0 and split[-1].end_at == t1
    assert [p.version.tariff for p in split] == ([OLD, NEW] if len(parts) == 2 else
                                                 [tariff_at(VERSIONS, t0)])


@pytest.mark.parametrize("start, end, message", [
    (datetime(2024, 7, 1, tzinfo=CST), datetime(2024, 7, 1, tzinfo=CST), "end_at: must be after"),
    (datetime(2024, 7, 1), datetime(2024, 7, 2, tzinfo=CST), "start_at: must be timezone-aware"),
])
def test_split_interval_refuses(start, end, message):
    with pytest.raises(TariffError, match="^" + message):
        split_interval(start, end, 10, [])


def test_price_span_prices_each_side_of_a_version_change():
    t0, t1 = datetime(2024, 6, 30, 12, tzinfo=CST), datetime(2024, 7, 1, 12, tzinfo=CST)
    quote = price_span(VERSIONS, t0, t1, 0, 1000)
    assert quote.exact_yuan == Decimal("0.55")
    assert summary(quote) == [(None, None, 500, "0.5000"), (None, None, 500, "0.6000")]


def test_price_span_restarts_a_monthly_cycle_on_the_first():
    versions = [TariffVersion(date(2024, 1, 1), BEIJING)]
    t0, t1 = datetime(2024, 6, 30, 12, tzinfo=CST), datetime(2024, 7, 1, 12, tzinfo=CST)
    quote = price_span(versions, t0, t1, kwh("235"), kwh("20"))
    assert [(line.tier, line.energy_wh) for line in quote.lines] == \
        [(1, kwh("5")), (2, kwh("5")), (1, kwh("10"))]


def test_price_span_carries_a_yearly_cycle_across_a_version_change():
    dearer = parse_tariff({"kind": "tiered_tou", "cycle": "year", "tiers": [
        {"up_to_kwh": 2760, "add": "0"}, {"up_to_kwh": None, "add": "0.10"}], "periods": [
        {"name": "peak", "from": "08:00", "to": "22:00", "price": "0.5"},
        {"name": "valley", "from": "22:00", "to": "08:00", "price": "0.3"}]})
    versions = [TariffVersion(date(2024, 1, 1), ZHEJIANG), TariffVersion(date(2024, 7, 1), dearer)]
    t0, t1 = datetime(2024, 6, 30, 12, tzinfo=CST), datetime(2024, 7, 1, 12, tzinfo=CST)
    quote = price_span(versions, t0, t1, kwh("2750"), {"peak": kwh("20")})
    assert summary(quote) == [(1, "peak", kwh("10"), "0.5680"),   # 2750 → 2760 in June
                              (2, "peak", kwh("10"), "0.6000")]   # still past 2760 in July


def test_price_span_restarts_a_yearly_cycle_on_1_january():
    versions = [TariffVersion(date(2024, 1, 1), ZHEJIANG)]
    t0, t1 = datetime(2024, 12, 31, 12, tzinfo=CST), datetime(2025, 1, 1, 12, tzinfo=CST)
    quote = price_span(versions, t0, t1, kwh("5000"), {"valley": kwh("20")})
    assert summary(quote) == [(3, "valley", kwh("10"), "0.5880"), (1, "valley", kwh("10"), "0.2880")]


def test_price_span_gives_each_part_its_month():
    versions = [TariffVersion(date(2024, 1, 1), SEASONAL)]
    t0, t1 = datetime(2024, 4, 30, 12, tzinfo=CST), datetime(2024, 5, 1, 12, tzinfo=CST)
    quote = price_span(versions, t0, t1, kwh("250"), kwh("20"))  # April restarts on 1 May
    assert [(line.tier, line.energy_wh) for line in quote.lines] == \
        [(2, kwh("10")), (1, kwh("10"))]


# --- properties ------------------------------------------------------------------------------------

prices = st.integers(0, 20_000).map(lambda n: Decimal(n).scaleb(-4))
energies = st.integers(0, 3_000_000)


@st.composite
def tiered_tariffs(draw):
    steps = draw(st.lists(st.integers(1, 500_000), min_size=0, max_size=3))
    bounds = [sum(steps[:i + 1]) for i in range(len(steps))] + [None]
    return TieredTariff("month", tuple(Tier(b, draw(prices)) for b in bounds))


@st.composite
def tiered_tou_tariffs(draw):
    steps = draw(st.lists(st.integers(1, 500_000), min_size=0, max_size=3))
    bounds = [sum(steps[:i + 1]) for i in range(len(steps))] + [None]
    hours = sorted(draw(st.sets(st.integers(0, 23), min_size=1, max_size=4)))
    periods = tuple(Period(f"p{i}", draw(prices), (TimeRange(60 * h, 60 * hours[(i + 1) % len(hours)]),))
                    for i, h in enumerate(hours)) if len(hours) > 1 else \
        (Period("p0", draw(prices), (TimeRange(0, 1440),)),)
    return TieredTouTariff("year", tuple(Tier(b, add_yuan_per_kwh=draw(prices)) for b in bounds),
                           periods)


def period_usage(tariff):
    return st.fixed_dictionaries({p.name: energies for p in tariff.periods})


def assert_consistent(quote):
    assert sum((line.amount_yuan for line in quote.lines), Decimal(0)) == quote.exact_yuan
    assert quote.charge_fen == to_fen(quote.exact_yuan) >= 0
    assert all(line.energy_wh > 0 and line.amount_yuan >= 0 for line in quote.lines)


@PROPERTY
@given(tiered_tariffs(), energies, energies, energies)
def test_tiered_total_and_each_tier_grow_with_energy(tariff, before, used, more):
    small, large = price_interval(tariff, before, used), price_interval(tariff, before, used + more)
    assert small.exact_yuan <= large.exact_yuan
    per_tier = [{line.tier: line.energy_wh for line in q.lines} for q in (small, large)]
    assert all(wh <= per_tier[1].get(tier, 0) for tier, wh in per_tier[0].items())


@PROPERTY
@given(tiered_tariffs(), energies, energies)
def test_tiered_quote_is_consistent_and_never_negative(tariff, before, used):
    quote = price_interval(tariff, before, used)
    assert_consistent(quote)
    assert quote.energy_wh == used


@PROPERTY
@given(tiered_tariffs(), energies, energies, energies)
def test_tiered_two_consecutive_quotes_equal_one(tariff, before, first, second):
    whole = price_interval(tariff, before, first + second).exact_yuan
    parts = price_interval(tariff, before, first).exact_yuan + \
        price_interval(tariff, before + first, second).exact_yuan
    assert parts == whole


@PROPERTY
@given(st.data(), tiered_tou_tariffs(), energies)
def test_tiered_tou_lines_sum_to_the_usage_and_the_total(data, tariff, before):
    usage = data.draw(period_usage(tariff))
    quote = price_interval(tariff, before, usage)
    assert_consistent(quote)
    for name, wh in usage.items():
        assert sum(line.energy_wh for line in quote.lines if line.period == name) == wh


@PROPERTY
@given(st.data(), tiered_tou_tariffs(), energies, energies, energies)
def test_tiered_tou_one_period_at_a_time_is_additive(data, tariff, before, first, second):
    name = data.draw(st.sampled_from([p.name for p in tariff.periods]))
    whole = price_interval(tariff, before, {name: first + second}).exact_yuan
    parts = price_interval(tariff, before, {name: first}).exact_yuan + \
        price_interval(tariff, before + first, {name: second}).exact_yuan
    assert parts == whole


@PROPERTY
@given(st.data(), tiered_tou_tariffs(), energies)
def test_tou_two_consecutive_quotes_equal_one(data, tariff, before):
    tou = TouTariff(tariff.periods)
    first, second = data.draw(period_usage(tariff)), data.draw(period_usage(tariff))
    whole = price_interval(tou, before, {n: first[n] + second[n] for n in first}).exact_yuan
    assert whole == price_interval(tou, 0, first).exact_yuan + \
        price_interval(tou, before, second).exact_yuan


@PROPERTY
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=4),
       st.lists(st.integers(0, 10_000), min_size=1, max_size=4))
def test_allocation_keeps_both_margins_to_the_wh(tiers, periods):
    total = min(sum(tiers), sum(periods))
    tier_wh = shrink_to(tiers, total)
    period_wh = shrink_to(periods, total)
    rows = allocate(tier_wh, period_wh)
    assert [sum(row) for row in rows] == tier_wh
    assert [sum(column) for column in zip(*rows)] == period_wh
    assert all(cell >= 0 for row in rows for cell in row)
    if total and sum(1 for t in tier_wh if t) <= 2:  # one bound crossed: within a Wh of exact
        assert all(abs(rows[i][j] - Fraction(t * p, total)) < 1
                   for i, t in enumerate(tier_wh) for j, p in enumerate(period_wh))


def shrink_to(parts, total):
    """`parts` trimmed from the end so that they sum to `total`."""
    out, left = [], total
    for part in parts:
        out.append(min(part, left))
        left -= out[-1]
    return out


@PROPERTY
@given(energies, st.integers(1, 48 * 60), st.integers(0, 48 * 60))
def test_split_interval_parts_sum_to_the_whole(energy, minutes, cut_after):
    t0 = datetime(2024, 6, 30, 20, tzinfo=CST)
    t1, cut = t0 + timedelta(minutes=minutes), t0 + timedelta(minutes=cut_after)
    parts = [e for _, _, e in split_interval(t0, t1, energy, [cut])]
    assert sum(parts) == energy and all(p >= 0 for p in parts)
    if len(parts) == 2:
        assert abs(parts[0] - Fraction(energy * cut_after, minutes)) <= Fraction(1, 2)
