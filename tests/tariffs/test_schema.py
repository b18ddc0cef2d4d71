"""The JSON form: what parses into which model, and every refusal naming its field."""

from decimal import Decimal
from pathlib import Path

import pytest

from app.tariffs import (
    FlatTariff,
    Period,
    TariffError,
    Tier,
    TieredTariff,
    TieredTouTariff,
    TimeRange,
    TouTariff,
    Usage,
    load_tariff,
    load_usage,
    parse_tariff,
    parse_usage,
)

EXAMPLES = Path(__file__).parent / "examples"
PEAK = {"name": "peak", "from": "08:00", "to": "22:00", "price": "0.568"}
VALLEY = {"name": "valley", "from": "22:00", "to": "08:00", "price": "0.288"}
BEIJING_TIERS = [{"up_to_kwh": 240, "price": "0.4883"}, {"up_to_kwh": 400, "price": "0.5383"},
                 {"up_to_kwh": None, "price": "0.7883"}]
ZJ_TIERS = [{"up_to_kwh": 2760, "add": "0"}, {"up_to_kwh": 4800, "add": "0.05"},
            {"up_to_kwh": None, "add": "0.30"}]


def flat(price="0.558", **extra):
    return {"kind": "flat", "price": price, **extra}


def tiered(*bounds, prices=("0.4883", "0.5383", "0.7883"), **extra):
    tiers = [{"up_to_kwh": b, "price": p} for b, p in zip(bounds, prices)]
    return {"kind": "tiered", "cycle": "month", "tiers": tiers, **extra}


def tou(*periods, **extra):
    return {"kind": "tou", "periods": list(periods), **extra}


def period(name, start, end, price="0.5"):
    return {"name": name, "from": start, "to": end, "price": price}


def tiered_tou(**extra):
    return {"kind": "tiered_tou", "cycle": "year", "tiers": ZJ_TIERS, "periods": [PEAK, VALLEY],
            **extra}


def test_beijing_example_parses_to_inclusive_wh_bounds():
    tariff = load_tariff((EXAMPLES / "beijing_tiered.json").read_text())
    assert tariff == TieredTariff(cycle="month", bound_uplift_wh=100_000, tiers=(
        Tier(240_000, Decimal("0.4883")), Tier(400_000, Decimal("0.5383")),
        Tier(None, Decimal("0.7883"))))
    assert tariff.bound_uplift_kwh == 100


def test_zhejiang_example_parses_surcharges_and_a_period_across_midnight():
    tariff = load_tariff((EXAMPLES / "zhejiang_tiered_tou.json").read_text())
    assert isinstance(tariff, TieredTouTariff) and tariff.cycle == "year"
    assert [t.add_yuan_per_kwh for t in tariff.tiers] == [0, Decimal("0.05"), Decimal("0.30")]
    assert [t.up_to_wh for t in tariff.tiers] == [2_760_000, 4_800_000, None]
    assert tariff.periods[1].ranges == (TimeRange(22 * 60, 8 * 60),)


@pytest.mark.parametrize("name", ["flat", "beijing_tiered", "seasonal_tiered",
                                  "zhejiang_tiered_tou", "tou_three_periods"])
def test_every_example_tariff_parses(name):
    load_tariff((EXAMPLES / f"{name}.json").read_text())


@pytest.mark.parametrize("data, expected", [
    (flat(), FlatTariff(Decimal("0.5580"))),
    (flat(5), FlatTariff(Decimal("5.0000"))),
    (flat(Decimal("0.4883")), FlatTariff(Decimal("0.4883"))),
    (flat(note="居民合表"), FlatTariff(Decimal("0.5580"))),
    (tiered("240.5", None, prices=("0.4", "0.5")), TieredTariff("month", (
        Tier(240_500, Decimal("0.4")), Tier(None, Decimal("0.5"))))),
    (tou(period("all", "00:00", "24:00")),
     TouTariff((Period("all", Decimal("0.5000"), (TimeRange(0, 1440),)),))),
])
def test_valid_forms(data, expected):
    assert parse_tariff(data) == expected


def test_json_numbers_are_read_as_decimals_never_floats():
    tariff = load_tariff('{"kind": "flat", "price": 0.558}')
    assert tariff.price_yuan_per_kwh == Decimal("0.558")


def test_ranges_and_from_to_describe_the_same_period():
    a = parse_tariff(tou(period("peak", "08:00", "22:00"), period("valley", "22:00", "08:00")))
    b = parse_tariff(tou({"name": "peak", "ranges": [["08:00", "22:00"]], "price": "0.5"},
                         {"name": "valley", "ranges": [["22:00", "24:00"], ["00:00", "08:00"]],
                          "price": "0.5"}))
    assert a.periods[0] == b.periods[0]
    assert {m for r in b.periods[1].ranges for m in r.minutes()} == \
        set(a.periods[1].ranges[0].minutes())


def test_seasons_parse_with_their_months():
    tariff = load_tariff((EXAMPLES / "seasonal_tiered.json").read_text())
    (summer,) = tariff.seasons
    assert summer.name == "summer" and summer.months == frozenset(range(5, 11))
    assert summer.tier_bounds_wh == (260_000, 600_000, None) and summer.periods is None


SIX = [period(f"p{i}", f"{4 * i:02d}:00", f"{4 * i + 4:02d}:00") for i in range(6)]
SEASON = {"months": [7, 8], "tiers_up_to_kwh": [260, 600, None]}

TARIFF_ERRORS = [
    ({}, "kind: required (one of flat, tiered, tou, tiered_tou)"),
    ({"kind": "stepped"}, "kind: unknown kind 'stepped'"),
    ([], "tariff: must be an object, got a list"),
    (flat("-0.1"), "price: must be zero or more, got '-0.1'"),
    (flat("0.12345"), "price: price has more than four decimal places: '0.12345'"),
    (flat(0.558), 'price: write the number as a string ("0.558")'),
    (flat("abc"), "price: not a number: 'abc'"),
    (flat(True), "price: must be a number written as a string, got true/false"),
    ({"kind": "flat"}, "price: required"),
    (flat(prise="1"), "prise: unknown field"),
    (flat(note=3), "note: must be a string"),
    (tiered(240, 400, None, cycle="week"), 'cycle: must be "month" or "year", got \'week\''),
    ({"kind": "tiered", "tiers": BEIJING_TIERS}, "cycle: required"),
    (tiered(240, 200, None), "tiers[1].up_to_kwh: must be greater than tiers[0].up_to_kwh (240)"),
    (tiered(240, 240, None), "tiers[1].up_to_kwh: must be greater than tiers[0].up_to_kwh (240)"),
    (tiered("240.5", "240.5", None), "tiers[1].up_to_kwh: must be greater than tiers[0].up_to_kwh "
                                     "(240.5)"),
    (tiered(240, None, None), "tiers[1].up_to_kwh: only the last tier may be open-ended (null)"),
    (tiered(240, 400, 500), "tiers[2].up_to_kwh: the last tier must be open-ended (null)"),
    (tiered("abc", 400, None), "tiers[0].up_to_kwh: not a number: 'abc'"),
    (tiered("-5", 400, None), "tiers[0].up_to_kwh: must be zero or more"),
    (tiered(0, 400, None), "tiers[0].up_to_kwh: must be greater than 0"),
    (tiered("240.0001", 400, None), "tiers[0].up_to_kwh: finer than a watt-hour"),
    (tiered(240.5, 400, None), "tiers[0].up_to_kwh: write the number as a string"),
    (tiered(240, 400, None, prices=("0.4883", "0.5383", "-1")), "tiers[2].price: must be zero"),
    (tiered(240, 400, None, prices=("0.4883", "0.53831", "1")), "tiers[1].price: price has more "
                                                                 "than four decimal places"),
    ({"kind": "tiered", "cycle": "month", "tiers": []}, "tiers: must not be empty"),
    ({"kind": "tiered", "cycle": "month", "tiers": {}}, "tiers: must be a list, got an object"),
    ({"kind": "tiered", "cycle": "month", "tiers": [{"up_to_kwh": None}]}, "tiers[0].price: "
                                                                           "required"),
    ({"kind": "tiered", "cycle": "month", "tiers": [{"price": "1"}]}, "tiers[0].up_to_kwh: "
                                                                      "required"),
    ({"kind": "tiered", "cycle": "month", "tiers": ["240"]}, "tiers[0]: must be an object"),
    (tiered(240, 400, None, bound_uplift_kwh="-1"), "bound_uplift_kwh: must be zero or more"),
    (tiered_tou(tiers=BEIJING_TIERS), "tiers[0].price: unknown field (expected one of add, "
                                      "up_to_kwh)"),
    (tiered_tou(tiers=[ZJ_TIERS[0], {"up_to_kwh": 4800, "add": "0.00001"}, ZJ_TIERS[2]]),
     "tiers[1].add: price has more than four decimal places"),
    ({"kind": "tiered_tou", "cycle": "year", "tiers": ZJ_TIERS}, "periods: required"),
    (tou(PEAK, period("valley", "21:00", "08:00")),
     "periods[1]: 21:00–08:00 overlaps periods[0] (peak) at 21:00"),
    (tou(PEAK, period("valley", "23:00", "08:00")),
     "periods: 22:00–23:00 is in no period (the periods must cover the 24 hours exactly once)"),
    (tou(period("day", "06:00", "23:00"), period("night", "01:00", "06:00")),
     "periods: 23:00–01:00 is in no period"),
    (tou(*SIX[:5]), "periods: at most 4 periods (spike, peak, flat, valley), got 5"),
    (tou(), "periods: must not be empty"),
    (tou(PEAK, {**VALLEY, "name": "peak"}), "periods[1].name: 'peak' is already the name of "
                                            "periods[0]"),
    (tou(PEAK, {**VALLEY, "name": ""}), "periods[1].name: must be a non-empty name"),
    (tou(PEAK, {**VALLEY, "name": " valley"}), "periods[1].name: must be a non-empty name"),
    (tou({**PEAK, "from": "25:00"}, VALLEY), "periods[0].from: must be a time from 00:00 to 23:59"),
    (tou({**PEAK, "from": "24:00"}, VALLEY), "periods[0].from: must be a time from 00:00 to 23:59"),
    (tou({**PEAK, "to": "22:60"}, VALLEY), "periods[0].to: must be a time from 00:00 to 24:00"),
    (tou({**PEAK, "from": "8:00"}, VALLEY), 'periods[0].from: must be a time of day "HH:MM", '
                                            "got '8:00'"),
    (tou({**PEAK, "from": 8}, VALLEY), 'periods[0].from: must be a time of day "HH:MM"'),
    (tou({**PEAK, "to": "08:00"}, VALLEY), "periods[0].to: must differ from the start (08:00)"),
    (tou({**PEAK, "ranges": [["08:00", "22:00"]]}, VALLEY),
     "periods[0]: give either from and to, or ranges, not both"),
    (tou({"name": "peak", "from": "08:00", "price": "1"}, VALLEY), "periods[0].to: required"),
    (tou({"name": "peak", "ranges": [["08:00", "12:00"], ["13:00"]], "price": "1"}, VALLEY),
     "periods[0].ranges[1]: must be a pair"),
    (tou({"name": "peak", "ranges": [["08:00", "12:00"], ["12:00", "99:00"]], "price": "1"},
         VALLEY), "periods[0].ranges[1][1]: must be a time from 00:00 to 24:00"),
    (tou({"name": "peak", "ranges": [["08:00", "12:00"], ["11:00", "22:00"]], "price": "1"},
         VALLEY), "periods[0].ranges[1]: 11:00–22:00 overlaps periods[0] (peak) at 11:00"),
    (tou({"name": "peak", "ranges": [], "price": "1"}, VALLEY), "periods[0].ranges: must not be "
                                                                "empty"),
    (tou(PEAK, {**VALLEY, "price": "-0.288"}), "periods[1].price: must be zero or more"),
    (tou(PEAK, {**VALLEY, "price": "0.28801"}), "periods[1].price: price has more than four"),
    (tou(PEAK, {**VALLEY, "cost": "1"}), "periods[1].cost: unknown field"),
    (tou(PEAK, VALLEY, seasons=[{"months": [13], "periods": [PEAK, VALLEY]}]),
     "seasons[0].months[0]: must be a month number from 1 to 12, got 13"),
    (tou(PEAK, VALLEY, seasons=[{"months": [], "periods": [PEAK, VALLEY]}]),
     "seasons[0].months: must not be empty"),
    (tou(PEAK, VALLEY, seasons=[{"months": [7, 8], "periods": [PEAK, VALLEY]},
                                {"months": [7], "periods": [PEAK, VALLEY]}]),
     "seasons[1].months[0]: month 7 is already in seasons[0]"),
    (tou(PEAK, VALLEY, seasons=[{"months": [7], "periods": [PEAK]}]),
     "seasons[0].periods: 22:00–08:00 is in no period"),
    (tou(PEAK, VALLEY, seasons=[{"months": [7]}]), "seasons[0]: give periods"),
    (tou(PEAK, VALLEY, seasons=[{"periods": [PEAK, VALLEY]}]), "seasons[0].months: required"),
    (tiered(240, 400, None, seasons=[{"months": [7], "periods": [PEAK, VALLEY]}]),
     "seasons[0].periods: unknown field"),
    (tiered(240, 400, None, seasons=[{**SEASON, "tiers_up_to_kwh": [260, None]}]),
     "seasons[0].tiers_up_to_kwh: must have 3 bounds, one per tier (the last null), got 2"),
    (tiered(240, 400, None, seasons=[{**SEASON, "tiers_up_to_kwh": [260, 200, None]}]),
     "seasons[0].tiers_up_to_kwh[1]: must be greater than seasons[0].tiers_up_to_kwh[0] (260)"),
    (tiered(240, 400, None, seasons=[{**SEASON, "name": ""}]), "seasons[0].name: must be a "
                                                               "non-empty string"),
    (tiered_tou(seasons=[{"months": [1], "tiers_up_to_kwh": [1, 2, None], "periods": [PEAK]}]),
     "seasons[0].periods: 22:00–08:00 is in no period"),
]


@pytest.mark.parametrize("data, message", TARIFF_ERRORS)
def test_bad_tariff_is_refused_naming_the_field(data, message):
    with pytest.raises(TariffError) as refused:
        parse_tariff(data)
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize("text, message", [
    ('{"kind": "flat", "price": NaN}', "price: not a finite number: 'NaN'"),
    ('{"kind": "flat", "price": "Infinity"}', "price: not a finite number"),
    ('{"kind": "flat"', "tariff: not valid JSON"),
])
def test_bad_tariff_text_is_refused(text, message):
    with pytest.raises(TariffError, match="^" + message.replace("(", r"\(")):
        load_tariff(text)


@pytest.mark.parametrize("data, expected", [
    ({"before_kwh": "0", "kwh": "300"}, Usage(0, energy_wh=300_000)),
    ({"kwh": 300}, Usage(0, energy_wh=300_000)),
    ({"before_kwh": "200.5", "kwh": "0.001"}, Usage(200_500, energy_wh=1)),
    ({"before_kwh": "0", "periods": {"peak": "120.5", "valley": "80"}, "month": 7},
     Usage(0, period_wh={"peak": 120_500, "valley": 80_000}, month=7)),
    ({"kwh": "1", "uplift_kwh": "100"}, Usage(0, energy_wh=1000, uplift_wh=100_000)),
])
def test_valid_usages(data, expected):
    assert parse_usage(data) == expected


USAGE_ERRORS = [
    ({"kwh": "abc"}, "usage.kwh: not a number: 'abc'"),
    ({"kwh": "-1"}, "usage.kwh: must be zero or more"),
    ({"kwh": "1.0005"}, "usage.kwh: finer than a watt-hour (at most 3 decimals of a kWh)"),
    ({"kwh": 1.5}, "usage.kwh: write the number as a string"),
    ({"kwh": None}, "usage.kwh: must be a number written as a string, got null"),
    ({"before_kwh": "x", "kwh": "1"}, "usage.before_kwh: not a number"),
    ({"before_kwh": "-1", "kwh": "1"}, "usage.before_kwh: must be zero or more"),
    ({}, "usage: give either kwh (one total) or periods (kWh per period name)"),
    ({"kwh": "1", "periods": {"peak": "1"}}, "usage: give either kwh"),
    ({"periods": {"peak": "abc"}}, "usage.periods.peak: not a number"),
    ({"periods": {"peak": "-2"}}, "usage.periods.peak: must be zero or more"),
    ({"periods": ["peak"]}, "usage.periods: must be an object of kWh by period name"),
    ({"kwh": "1", "month": 13}, "usage.month: must be a month number from 1 to 12"),
    ({"kwh": "1", "month": "7"}, "usage.month: must be a month number from 1 to 12"),
    ({"kwh": "1", "mnth": 7}, "usage.mnth: unknown field"),
    ({"kwh": "1", "uplift_kwh": "x"}, "usage.uplift_kwh: not a number"),
    ([], "usage: must be an object"),
]


@pytest.mark.parametrize("data, message", USAGE_ERRORS)
def test_bad_usage_is_refused_naming_the_field(data, message):
    with pytest.raises(TariffError) as refused:
        parse_usage(data)
    assert str(refused.value).startswith(message)


def test_usage_text_reads_numbers_as_decimals():
    assert load_usage('{"kwh": 120.5}') == Usage(0, energy_wh=120_500)
