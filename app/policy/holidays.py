"""Public holidays (法定节假日), for the rule that no cut happens on one.

`ChinaCalendar` wraps the `chinesecalendar` package (import `chinese_calendar`), which carries the
State Council's arrangement year by year: the holidays, the weekdays given off in lieu (调休放假)
and the weekend days worked to make up for them (调休上班). Past the last year it covers it knows
nothing, and neither do we: a lookup there raises `PolicyUndecidable` instead of guessing that
an unknown date is an ordinary day.

An estate names its calendar (`Estate.holiday_calendar`): "cn" for mainland China, "none" for no
holiday rule at all (the test estates, which must cut at any wall-clock date).
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import chinese_calendar
from chinese_calendar.constants import holidays as _cn_holidays

CHINA = "cn"
NO_HOLIDAYS = "none"

# The package names holidays in English; residents and managers read Chinese.
_NAMES_ZH = {
    "New Year's Day": "元旦",
    "Spring Festival": "春节",
    "Tomb-sweeping Day": "清明节",
    "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午节",
    "National Day": "国庆节",
    "Mid-autumn Festival": "中秋节",
    "Anti-Fascist 70th Day": "抗战胜利纪念日",
}


class PolicyUndecidable(Exception):
    """The policy cannot decide automatically; `reason` (zh) says why, for a person to act."""

    def __init__(self, code: str, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class HolidayCalendar(Protocol):
    def holiday_name(self, day: dt.date) -> str | None:
        """The public holiday `day` belongs to (its Chinese name), or None on any other day,
        weekends included. Raises `PolicyUndecidable` where the calendar has no data."""


class ChinaCalendar:
    """Mainland China's public holidays, as far as the installed `chinesecalendar` knows them."""

    first_year = min(_cn_holidays).year
    last_year = max(_cn_holidays).year

    def holiday_name(self, day: dt.date) -> str | None:
        if not self.first_year <= day.year <= self.last_year:
            raise PolicyUndecidable(
                "calendar_unknown",
                f"节假日数据只覆盖 {self.first_year}–{self.last_year} 年，无法判断 {day:%Y-%m-%d} "
                f"是否为法定节假日，不自动停电；请人工处理，或升级 chinesecalendar",
            )
        try:
            resting, name = chinese_calendar.get_holiday_detail(day)
        except NotImplementedError as exc:  # the package's own coverage check, in case ours drifts
            raise PolicyUndecidable("calendar_unknown", f"节假日数据无法判断 {day:%Y-%m-%d}：{exc}")
        # A make-up workday (调休上班) carries the holiday's name but is a workday; an ordinary
        # weekend is a rest day without a name: neither is a public holiday.
        if resting and name is not None:
            return _NAMES_ZH.get(name, name)
        return None


class NoHolidays:
    """No holiday rule: every date is an ordinary day."""

    def holiday_name(self, day: dt.date) -> str | None:
        return None


class UnknownCalendar:
    """An estate naming a calendar we do not have: every lookup is undecidable."""

    def __init__(self, name: str):
        self.name = name

    def holiday_name(self, day: dt.date) -> str | None:
        raise PolicyUndecidable("calendar_unknown",
                                f"未知的节假日日历“{self.name}”，无法判断是否为节假日，不自动停电")


def calendar_for(name: str) -> HolidayCalendar:
    if name == CHINA:
        return ChinaCalendar()
    if name == NO_HOLIDAYS:
        return NoHolidays()
    return UnknownCalendar(name)


def is_holiday(calendar: HolidayCalendar, day: dt.date) -> bool:
    return calendar.holiday_name(day) is not None


def next_non_holiday(calendar: HolidayCalendar, day: dt.date) -> dt.date:
    """The first date from `day` on that is not a public holiday (`day` itself if it is not)."""
    for _ in range(60):  # the longest holiday (Spring Festival) is 9 days
        if calendar.holiday_name(day) is None:
            return day
        day += dt.timedelta(days=1)
    raise PolicyUndecidable("calendar_unknown", f"{day:%Y-%m-%d} 前 60 天都是节假日：日历数据有误")
