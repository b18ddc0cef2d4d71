"""The calendar: public holidays by name and make-up workdays from the package; the statutory
holidays computed past it."""

import datetime as dt

import pytest

from app.policy.holidays import (COMPUTED, PACKAGE, ChinaCalendar, NoHolidays, PolicyUndecidable,
                                 calendar_for, computed_day, next_non_holiday,
                                 statutory_holidays)

CN = ChinaCalendar()


@pytest.mark.parametrize("day, name", [
    (dt.date(2026, 10, 1), "国庆节"),
    (dt.date(2026, 10, 4), "国庆节"),  # a Sunday inside the holiday
    (dt.date(2026, 10, 7), "国庆节"),  # a Wednesday given off in lieu
    (dt.date(2026, 1, 1), "元旦"),
    (dt.date(2026, 10, 8), None),
    (dt.date(2026, 10, 10), None),  # Saturday worked for National Day (调休上班)
    (dt.date(2026, 11, 21), None),  # an ordinary Saturday
    (dt.date(2026, 11, 18), None),
])
def test_holiday_names_come_from_the_official_arrangement(day, name):
    assert CN.holiday_name(day) == name


def test_the_holiday_ends_on_the_first_day_that_is_not_one():
    assert next_non_holiday(CN, dt.date(2026, 10, 1)) == dt.date(2026, 10, 8)
    assert next_non_holiday(CN, dt.date(2026, 10, 8)) == dt.date(2026, 10, 8)


@pytest.mark.parametrize("day, name", [
    (dt.date(2027, 1, 1), "元旦"),
    (dt.date(2027, 1, 3), "元旦"),  # a Sunday joined to New Year's Day
    (dt.date(2027, 2, 5), "春节"),  # New Year's Eve (除夕)
    (dt.date(2027, 2, 6), "春节"),  # the first day of the lunar year
    (dt.date(2027, 2, 8), "春节"),
    (dt.date(2027, 4, 5), "清明节"),  # the solar term's day
    (dt.date(2027, 5, 2), "劳动节"),
    (dt.date(2027, 6, 9), "端午节"),
    (dt.date(2027, 9, 15), "中秋节"),
    (dt.date(2027, 10, 3), "国庆节"),
    (dt.date(2027, 1, 4), None),  # a Monday
    (dt.date(2027, 1, 9), None),  # an ordinary Saturday: a day off, no holiday
    (dt.date(2027, 2, 9), None),  # the official arrangement would add days in lieu: unknowable
    (dt.date(2028, 10, 3), "中秋节、国庆节"),  # two holidays on one date
])
def test_past_the_package_the_statutory_holidays_are_computed(day, name):
    info = CN.day(day)
    assert (info.holiday, info.source, info.official) == (name, COMPUTED, False)


def test_the_computed_days_are_official_holidays_in_the_years_the_package_knows():
    """The rule and the lunar library checked against the State Council's arrangements of
    2025 and 2026 (the first two years of the 2024 revision): every statutory day is off."""
    for year in (2025, 2026):
        days = statutory_holidays(year)
        assert len(days) == 13
        for day, name in days.items():
            assert (CN.day(day).holiday, CN.day(day).source) == (name, PACKAGE), day


def test_a_weekend_before_new_year_s_day_joins_it_across_the_year_end():
    assert computed_day(dt.date(2033, 12, 31)).holiday == "元旦"  # 2034-01-01 is a Sunday
    assert computed_day(dt.date(2033, 12, 30)).holiday is None  # a Friday


def test_estates_name_their_calendar():
    assert isinstance(calendar_for("cn"), ChinaCalendar)
    assert calendar_for("none").holiday_name(dt.date(2026, 10, 1)) is None
    assert isinstance(calendar_for("none"), NoHolidays)
    with pytest.raises(PolicyUndecidable):
        calendar_for("hk").holiday_name(dt.date(2026, 10, 1))
