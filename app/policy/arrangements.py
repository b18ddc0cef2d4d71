"""Official holiday arrangements loaded by an operator, and how far the calendar is official.

The file format (docs/holidays.md), one statement a line, `#` starts a comment:

    年份 2027                      (or: year 2027)
    来源 国务院办公厅关于2027年部分节假日安排的通知（国办发明电〔2026〕N号）   (or: source …)
    休 2027-01-01..2027-01-03 元旦   (or: off …) days off: a date or a range, and the holiday
    班 2027-02-20 春节               (or: work …) a weekend day worked to make up (调休上班)

`parse_arrangement` checks every line and the whole (each statutory holiday of the year is a
day off, a worked day is a weekend, no date twice) and raises `ArrangementError` listing every
problem by line; `load_arrangement` stores a parsed file, nothing when it is the one in force
already. `estate_calendar` is the calendar the cut policy uses: the loaded arrangements over
chinesecalendar's, computed past both. `calendar_status` says until when it is official and,
from 60 days before that, warns that next year's arrangement should be loaded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
from dataclasses import dataclass

from sqlmodel import Session, select

from app.estate.models import Estate
from app.policy.holidays import (CHINA, COMPUTED, SOURCE_ZH, Arrangement, CalendarDay,
                                 ChinaCalendar, HolidayCalendar, calendar_for,
                                 statutory_holidays)
from app.policy.models import HolidayArrangement, HolidayDay

WARN_DAYS = 60  # warn this many days before the official calendar ends
MAX_FILE_BYTES = 64 * 1024

_KEYWORDS = {"年份": "year", "year": "year", "来源": "source", "source": "source",
             "休": "off", "off": "off", "班": "work", "work": "work"}
_DATE = r"\d{4}-\d{2}-\d{2}"
_RANGE = re.compile(rf"^({_DATE})(?:\s*(?:\.\.|至|~)\s*({_DATE}))?\s+(\S.*)$")
_STATEMENT = re.compile(r"^([^\s:：]+)[\s:：]*(.*)$")
_WEEKDAYS_ZH = "一二三四五六日"


class ArrangementError(ValueError):
    """A holiday file that cannot be loaded; `problems` lists each, with its line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ParsedArrangement:
    year: int
    source: str
    days: dict[dt.date, tuple[bool, str]]  # date → (rest, holiday name)
    sha256: str


def decode_file(data: bytes) -> str:
    """A holiday file's text: UTF-8 (with or without BOM), else GB18030 (Windows in China)."""
    if len(data) > MAX_FILE_BYTES:
        raise ArrangementError([f"文件过大（{len(data)} 字节，上限 {MAX_FILE_BYTES}）：不是节假日安排文件"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("gb18030")
        except UnicodeDecodeError:
            raise ArrangementError(["文件既不是 UTF-8 也不是 GB18030 编码的文本"]) from None


def parse_arrangement(text: str) -> ParsedArrangement:
    """Check and read a holiday file (the module's docstring). Raises `ArrangementError` with
    every problem found, each naming its line; returns only a file without any."""
    problems: list[str] = []
    year: int | None = None
    source = ""
    days: dict[dt.date, tuple[bool, str]] = {}
    first_line: dict[dt.date, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        word, rest = _STATEMENT.match(line).groups()
        kind = _KEYWORDS.get(word.lower())
        where = f"第 {number} 行（{raw.strip()}）"
        if kind is None:
            problems.append(f"{where}：不认识“{word}”；每行以 年份、来源、休 或 班 开头")
        elif kind == "year":
            if year is not None:
                problems.append(f"{where}：年份只能写一次")
            elif not re.fullmatch(r"\d{4}", rest) or not 2000 <= int(rest) <= 2199:
                problems.append(f"{where}：年份应为四位数字，如 2027")
            else:
                year = int(rest)
        elif kind == "source":
            if not rest:
                problems.append(f"{where}：来源不能为空：写明国务院办公厅通知的标题和文号")
            source = rest[:500]
        else:
            problems += _day_line(where, number, kind, rest, year, days, first_line)
    if year is None:
        problems.append("文件缺少“年份”行（如：年份 2027），须写在日期之前")
    if not source:
        problems.append("文件缺少“来源”行：写明国务院办公厅通知的标题和文号")
    if year is not None and not problems:
        for day, name in sorted(statutory_holidays(year).items()):
            if not days.get(day, (False, ""))[0]:
                problems.append(f"法定节假日 {day:%Y-%m-%d}（{name}）在文件中不是休息日："
                                "请核对通知原文")
        if not any(rest for rest, _ in days.values()):
            problems.append("文件没有任何“休”行")
    if problems:
        raise ArrangementError(problems)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return ParsedArrangement(year, source, days, digest)


def _day_line(where: str, number: int, kind: str, rest: str, year: int | None,
              days: dict, first_line: dict) -> list[str]:
    if year is None:
        return [f"{where}：日期之前须先写“年份”行"]
    match = _RANGE.match(rest)
    if match is None:
        return [f"{where}：应为“{'休' if kind == 'off' else '班'} 日期[..日期] 节日名称”，"
                "日期写作 2027-01-01"]
    try:
        start = dt.date.fromisoformat(match.group(1))
        end = dt.date.fromisoformat(match.group(2) or match.group(1))
    except ValueError:
        return [f"{where}：日期不存在"]
    name = match.group(3).strip()[:40]
    if end < start:
        return [f"{where}：结束日期早于开始日期"]
    if (end - start).days > 15:
        return [f"{where}：一段假期不会超过 16 天，请核对日期"]
    problems = []
    day = start
    while day <= end:
        if not (day.year == year or (day.year == year - 1 and day.month == 12)):
            problems.append(f"{where}：{day:%Y-%m-%d} 不属于 {year} 年的安排"
                            f"（只可含 {year} 年和 {year - 1} 年 12 月的日期）")
        elif kind == "work" and day.weekday() < 5:
            problems.append(f"{where}：{day:%Y-%m-%d} 是星期{_WEEKDAYS_ZH[day.weekday()]}，"
                            "调休上班只会在周末")
        elif day in days:
            problems.append(f"{where}：{day:%Y-%m-%d} 已在第 {first_line[day]} 行出现")
        else:
            days[day] = (kind == "off", name)
            first_line[day] = number
        day += dt.timedelta(days=1)
    return problems


def load_arrangement(session: Session, parsed: ParsedArrangement, *, by: str, file_name: str,
                     now: dt.datetime, calendar: str = CHINA) -> HolidayArrangement | None:
    """Store `parsed` as the arrangement in force for its year, in the caller's transaction.
    None, writing nothing, when it is the one in force already (same text)."""
    current = _in_force(session, calendar).get(parsed.year)
    if current is not None and current.sha256 == parsed.sha256:
        return None
    row = HolidayArrangement(calendar=calendar, year=parsed.year, source=parsed.source,
                             file_name=file_name[:200], sha256=parsed.sha256, loaded_at=now,
                             loaded_by=by[:100])
    session.add(row)
    session.flush()
    session.add_all(HolidayDay(arrangement_id=row.id, day=day, rest=rest, name=name)
                    for day, (rest, name) in sorted(parsed.days.items()))
    return row


def _in_force(session: Session, calendar: str) -> dict[int, HolidayArrangement]:
    """The newest loaded arrangement of each year."""
    rows = session.exec(select(HolidayArrangement)
                        .where(HolidayArrangement.calendar == calendar)
                        .order_by(HolidayArrangement.id)).all()
    return {row.year: row for row in rows}


_cache: dict[tuple, ChinaCalendar] = {}
_cache_lock = threading.Lock()


def loaded_calendar(session: Session) -> ChinaCalendar:
    """Mainland China's calendar with the loaded arrangements in force. Read once per process
    and database, and again whenever an arrangement was loaded since (one small query)."""
    newest = session.exec(select(HolidayArrangement.id, HolidayArrangement.loaded_at)
                          .order_by(HolidayArrangement.id.desc()).limit(1)).first()
    key = (str(session.get_bind().url), tuple(newest) if newest else None)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    arrangements = []
    for row in _in_force(session, CHINA).values():
        days = session.exec(select(HolidayDay).where(HolidayDay.arrangement_id == row.id)).all()
        arrangements.append(Arrangement(row.year, row.source,
                                        {d.day: (d.rest, d.name) for d in days}))
    calendar = ChinaCalendar(arrangements)
    with _cache_lock:
        if len(_cache) > 32:
            _cache.clear()
        _cache[key] = calendar
    return calendar


def estate_calendar(session: Session, estate: Estate) -> HolidayCalendar:
    """The holiday calendar `estate` names, with what operators loaded."""
    if estate.holiday_calendar == CHINA:
        return loaded_calendar(session)
    return calendar_for(estate.holiday_calendar)


# --- how far the calendar is official -----------------------------------------------------------

@dataclass(frozen=True)
class CalendarStatus:
    today: dt.date
    official_until: dt.date  # the last date of the run of officially covered years from today
    warning: str | None  # zh, for operators and managers; None while no action is needed

    @property
    def days_left(self) -> int:
        return (self.official_until - self.today).days


def calendar_status(session: Session, today: dt.date) -> CalendarStatus | None:
    """How far the official holiday arrangement reaches from `today` (local date), with a
    warning from `WARN_DAYS` days before it ends. None when no estate uses the Chinese
    calendar."""
    uses = session.exec(select(Estate.id).where(Estate.holiday_calendar == CHINA)).first()
    if uses is None:
        return None
    return status_of(loaded_calendar(session), today)


def status_of(calendar: ChinaCalendar, today: dt.date) -> CalendarStatus:
    years = calendar.official_years()
    year = today.year
    while year in years:
        year += 1
    until = dt.date(year - 1, 12, 31)
    warning = None
    if until < today:
        warning = (f"节假日安排只正式覆盖到 {until:%Y-%m-%d}：{today.year} 年的节假日目前按规则推算"
                   f"（不含调休），请载入国务院办公厅公布的 {year} 年节假日安排"
                   f"（feikong holidays load 文件）")
    elif (until - today).days <= WARN_DAYS:
        warning = (f"节假日安排只正式覆盖到 {until:%Y-%m-%d}（还有 {(until - today).days} 天）："
                   f"请在国务院办公厅公布后载入 {year} 年的节假日安排（feikong holidays load 文件）；"
                   f"未载入时 {year} 年的节假日按规则推算（不含调休）")
    return CalendarStatus(today, until, warning)


# --- one year, for people -------------------------------------------------------------------------

def year_listing(session: Session, year: int) -> str:
    """`feikong holidays show YEAR`: where the year's arrangement comes from, then each day off
    that is not an ordinary weekend and each weekend day worked, with its source."""
    calendar = loaded_calendar(session)
    loaded = _in_force(session, CHINA).get(year)
    if loaded is not None:
        header = (f"{year} 年：{SOURCE_ZH['loaded']}，{loaded.source}"
                  f"（文件 {loaded.file_name or '-'}，{_local(loaded.loaded_at)} 由 "
                  f"{loaded.loaded_by or '-'} 载入）")
    elif calendar.first_year <= year <= calendar.last_year:
        header = f"{year} 年：{SOURCE_ZH['package']}"
    else:
        header = (f"{year} 年：{SOURCE_ZH[COMPUTED]}：未载入正式安排，法定节假日按《全国年节及纪念日"
                  "放假办法》推算，与之相连的周末一并休息；调休无法推算")
    lines = [header]
    day = dt.date(year, 1, 1)
    if loaded is not None:  # a loaded file may start in the previous December
        day = min([day, *[d for d in calendar.arrangements[year].days if d < day]])
    while day <= dt.date(year, 12, 31):
        info = calendar.day(day)
        if info.holiday is not None or (info.rest and day.weekday() < 5):
            lines.append(_row("休", info, "放假"))
        elif not info.rest and day.weekday() >= 5:
            lines.append(_row("班", info, "调休上班"))
        day += dt.timedelta(days=1)
    return "\n".join(lines)


def _row(mark: str, info: CalendarDay, what: str) -> str:
    name = info.name or ""
    return (f"  {mark} {info.day:%Y-%m-%d} 周{_WEEKDAYS_ZH[info.day.weekday()]}  "
            f"{name}{what}  [{info.source}]")


def _local(moment: dt.datetime) -> str:
    from app.policy.clock import local_str

    return local_str(moment)
