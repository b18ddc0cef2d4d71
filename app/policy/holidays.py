"""Public holidays (法定节假日), for the rule that no cut happens on one.

Mainland China's calendar (`ChinaCalendar`) answers from three sources, the first that covers a
date wins:

1. **loaded** — an official arrangement an operator loaded (`feikong holidays load`, kept in the
   database: `app.policy.arrangements`): the State Council's general office publishes next
   year's holidays, days given off in lieu (调休放假) and weekend days worked to make up for
   them (调休上班) each autumn. A loaded year is covered whole: a date of it that the file does
   not list is an ordinary day (weekends off).
2. **package** — the same arrangement as packaged by `chinesecalendar` (import
   `chinese_calendar`), for the years it carries.
3. **computed** — past both, the statutory holidays of the 全国年节及纪念日放假办法 (as revised
   in 2024, in force from 2025): New Year's Day (1 January), Spring Festival (New Year's Eve
   and the first three days of the lunar year), Qingming (the day of the solar term),
   Labour Day (1–2 May), Dragon Boat (5th of the 5th lunar month), Mid-Autumn (15th of the 8th)
   and National Day (1–3 October); lunar dates and the solar term from `lunar_python`. A
   weekend touching a holiday is part of it (the official arrangement always joins them); any
   other weekend is an ordinary day off. Days in lieu and make-up working weekends cannot be
   computed: they are what the official arrangement adds, and why it should be loaded.

Every answer says which source gave it (`CalendarDay.source`), so a cut decided on a computed
day says so. An estate names its calendar (`Estate.holiday_calendar`): "cn" for mainland China,
"none" for no holiday rule at all (the test estates, which must cut at any wall-clock date).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import chinese_calendar
from chinese_calendar.constants import holidays as _cn_holidays
from chinese_calendar.constants import workdays as _cn_workdays

CHINA = "cn"
NO_HOLIDAYS = "none"

# Where an answer came from.
LOADED = "loaded"  # an official arrangement loaded by an operator
PACKAGE = "package"  # the official arrangement as packaged by chinesecalendar
COMPUTED = "computed"  # the statutory holidays computed by rule: not an official arrangement
NONE_SOURCE = "none"  # an estate without a holiday rule
OFFICIAL_SOURCES = frozenset({LOADED, PACKAGE})

SOURCE_ZH = {LOADED: "已载入的正式安排", PACKAGE: "chinesecalendar 内置的正式安排",
             COMPUTED: "按规则推算（非正式安排）", NONE_SOURCE: "不适用节假日"}

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

NEW_YEAR, SPRING, QINGMING, LABOUR = "元旦", "春节", "清明节", "劳动节"
DRAGON_BOAT, MID_AUTUMN, NATIONAL = "端午节", "中秋节", "国庆节"


class PolicyUndecidable(Exception):
    """The policy cannot decide automatically; `reason` (zh) says why, for a person to act."""

    def __init__(self, code: str, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class CalendarDay:
    """One local date as a calendar sees it."""

    day: dt.date
    rest: bool  # a day off: a weekend, a holiday or a day given off in lieu
    name: str | None  # the holiday it belongs to, a day off or a make-up working day; else None
    source: str  # LOADED | PACKAGE | COMPUTED | NONE_SOURCE

    @property
    def holiday(self) -> str | None:
        """The public holiday this day is part of (its Chinese name), or None on any other day:
        ordinary weekends and make-up working days are no public holiday."""
        return self.name if self.rest and self.name else None

    @property
    def official(self) -> bool:
        return self.source in OFFICIAL_SOURCES


class HolidayCalendar(Protocol):
    def day(self, day: dt.date) -> CalendarDay:
        """What `day` is, and which source says so. Raises `PolicyUndecidable` where the
        calendar cannot tell."""

    def holiday_name(self, day: dt.date) -> str | None:
        """The public holiday `day` belongs to (its Chinese name), or None on any other day,
        weekends included. Raises `PolicyUndecidable` where the calendar cannot tell."""


@dataclass(frozen=True)
class Arrangement:
    """An official arrangement of one year, as loaded: the days it lists (off or worked, with
    the holiday's name; a few may fall in the previous December) and where it came from."""

    year: int
    source: str
    days: Mapping[dt.date, tuple[bool, str]] = field(default_factory=dict)  # date → (rest, name)


def _weekend(day: dt.date) -> bool:
    return day.weekday() >= 5


class ChinaCalendar:
    """Mainland China's public holidays: loaded arrangements, then chinesecalendar's, then the
    statutory holidays computed by rule (the module's docstring)."""

    first_year = min(_cn_holidays).year
    last_year = max(max(_cn_holidays), max(_cn_workdays)).year  # the package's last year

    def __init__(self, arrangements: Iterable[Arrangement] = ()):
        self.arrangements = {a.year: a for a in arrangements}
        self._loaded_days: dict[dt.date, tuple[bool, str]] = {}
        for year in sorted(self.arrangements):
            self._loaded_days.update(self.arrangements[year].days)

    def official_years(self) -> set[int]:
        """The years an official arrangement covers: the package's and the loaded ones."""
        return set(range(self.first_year, self.last_year + 1)) | set(self.arrangements)

    def day(self, day: dt.date) -> CalendarDay:
        if day in self._loaded_days:
            rest, name = self._loaded_days[day]
            return CalendarDay(day, rest, name, LOADED)
        if day.year in self.arrangements:
            return CalendarDay(day, _weekend(day), None, LOADED)
        if self.first_year <= day.year <= self.last_year:
            return self._packaged(day)
        return computed_day(day)

    def holiday_name(self, day: dt.date) -> str | None:
        return self.day(day).holiday

    @staticmethod
    def _packaged(day: dt.date) -> CalendarDay:
        try:
            rest, name = chinese_calendar.get_holiday_detail(day)
        except NotImplementedError:  # the package's own coverage check, in case ours drifts
            return computed_day(day)
        return CalendarDay(day, rest, _NAMES_ZH.get(name, name) if name else None, PACKAGE)


# --- the statutory holidays, computed ------------------------------------------------------------

def _lunar_to_solar(year: int, month: int, day: int) -> dt.date:
    from lunar_python import Lunar

    solar = Lunar.fromYmd(year, month, day).getSolar()
    return dt.date(solar.getYear(), solar.getMonth(), solar.getDay())


def _qingming(year: int) -> dt.date:
    from lunar_python import Lunar

    solar = Lunar.fromYmd(year, 3, 1).getJieQiTable()["清明"]  # the table around lunar month 3
    return dt.date(solar.getYear(), solar.getMonth(), solar.getDay())


@functools.lru_cache(maxsize=64)
def statutory_holidays(year: int) -> dict[dt.date, str]:
    """The statutory days off of `year` (国务院令第795号, in force from 2025-01-01), by date:
    13 days, fewer when two holidays fall on one date (Mid-Autumn on 1–3 October)."""
    days: dict[dt.date, str] = {}

    def add(day: dt.date, name: str) -> None:
        days[day] = f"{days[day]}、{name}" if day in days and name not in days[day] else name

    add(dt.date(year, 1, 1), NEW_YEAR)
    spring = _lunar_to_solar(year, 1, 1)
    for offset in (-1, 0, 1, 2):  # 除夕, 初一, 初二, 初三
        add(spring + dt.timedelta(days=offset), SPRING)
    add(_qingming(year), QINGMING)
    add(dt.date(year, 5, 1), LABOUR)
    add(dt.date(year, 5, 2), LABOUR)
    add(_lunar_to_solar(year, 5, 5), DRAGON_BOAT)
    add(_lunar_to_solar(year, 8, 15), MID_AUTUMN)
    for d in (1, 2, 3):
        add(dt.date(year, 10, d), NATIONAL)
    return days


@functools.lru_cache(maxsize=64)
def computed_holidays(year: int) -> dict[dt.date, str]:
    """The days off of `year`'s holidays as computed: the statutory days and every weekend day
    touching them (a weekend before 1 January may fall in the previous December)."""
    try:
        statutory = statutory_holidays(year)
    except Exception as exc:  # outside the lunar library's range: nothing to guess from
        raise PolicyUndecidable("calendar_unknown",
                                f"无法推算 {year} 年的法定节假日（{exc}），不自动停电") from None
    days = dict(statutory)
    for day, name in sorted(statutory.items()):
        for step in (dt.timedelta(days=-1), dt.timedelta(days=1)):
            other = day + step
            while _weekend(other) and other not in statutory:
                days.setdefault(other, name)
                other += step
    return days


def computed_day(day: dt.date) -> CalendarDay:
    """`day` as the rule computes it: a holiday (or a weekend joined to one), an ordinary
    weekend, or a working day."""
    for year in (day.year, day.year + 1):  # next year's New Year may reach into December
        name = computed_holidays(year).get(day)
        if name is not None:
            return CalendarDay(day, True, name, COMPUTED)
    return CalendarDay(day, _weekend(day), None, COMPUTED)


# --- other calendars ----------------------------------------------------------------------------

class NoHolidays:
    """No holiday rule: every date is an ordinary day."""

    def day(self, day: dt.date) -> CalendarDay:
        return CalendarDay(day, _weekend(day), None, NONE_SOURCE)

    def holiday_name(self, day: dt.date) -> str | None:
        return None


class UnknownCalendar:
    """An estate naming a calendar we do not have: every lookup is undecidable."""

    def __init__(self, name: str):
        self.name = name

    def day(self, day: dt.date) -> CalendarDay:
        raise PolicyUndecidable("calendar_unknown",
                                f"未知的节假日日历“{self.name}”，无法判断是否为节假日，不自动停电")

    def holiday_name(self, day: dt.date) -> str | None:
        return self.day(day).holiday


def calendar_for(name: str, arrangements: Iterable[Arrangement] = ()) -> HolidayCalendar:
    """The calendar an estate names; for "cn", with the official arrangements loaded
    (`app.policy.arrangements.estate_calendar` reads them from the database)."""
    if name == CHINA:
        return ChinaCalendar(arrangements)
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
