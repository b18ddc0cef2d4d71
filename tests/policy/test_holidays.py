"""The chinesecalendar wrapper: public holidays by name, make-up workdays, and no guessing."""

import datetime as dt

import pytest

from app.policy.holidays import (ChinaCalendar, NoHolidays, PolicyUndecidable, calendar_for,
                                 is_holiday, next_non_holiday)

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


def test_a_year_the_package_does_not_cover_is_undecidable():
    with pytest.raises(PolicyUndecidable) as raised:
        is_holiday(CN, dt.date(CN.last_year + 1, 1, 4))
    assert raised.value.code == "calendar_unknown"
    assert str(CN.last_year) in raised.value.reason


def test_estates_name_their_calendar():
    assert isinstance(calendar_for("cn"), ChinaCalendar)
    assert calendar_for("none").holiday_name(dt.date(2026, 10, 1)) is None
    assert isinstance(calendar_for("none"), NoHolidays)
    with pytest.raises(PolicyUndecidable):
        calendar_for("hk").holiday_name(dt.date(2026, 10, 1))
