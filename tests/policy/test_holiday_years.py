"""Past the packaged calendar: cuts go on by the computed calendar and say so; an operator loads
the official arrangement (`feikong holidays load`), which then decides; a bad file loads
nothing; and the warning comes from 60 days before the official calendar ends.

Every decision is taken by the real policy on a real database, at a fixed local moment."""

import datetime as dt
from pathlib import Path

import pytest
from sqlmodel import select

from app.anomalies.review import format_review, review
from app.cli import main as feikong
from app.db import transaction
from app.policy.arrangements import calendar_status, loaded_calendar
from app.policy.holidays import COMPUTED, LOADED, PACKAGE, ChinaCalendar
from app.policy.models import CUT, WAIT, HolidayArrangement, HolidayDay
from tests.policy.common import at, commands, decisions, household, poll

DOCS_2026 = Path(__file__).parents[2] / "docs" / "holidays" / "2026.txt"

# A 2027 arrangement for the tests: invented (the real one is whatever the State Council
# publishes), shaped like the real ones: days in lieu on weekdays, weekend days worked.
ARRANGEMENT_2027 = """\
# test fixture, not the official arrangement
年份 2027
来源 测试用安排（虚构，非国务院办公厅通知）
休 2027-01-01..2027-01-03 元旦
休 2027-02-05..2027-02-12 春节
班 2027-02-20 春节
休 2027-04-03..2027-04-05 清明节
班 2027-04-25 劳动节
休 2027-05-01..2027-05-05 劳动节
休 2027-06-09 端午节
休 2027-09-15 中秋节
班 2027-09-26 国庆节
休 2027-10-01..2027-10-07 国庆节
班 2027-10-09 国庆节
"""


def decided(engine, number: str, moment: dt.datetime):
    """The policy's last decision for `number` at `moment`, its balance-exhausted notice having
    gone out two days before."""
    poll(engine, number, moment - dt.timedelta(days=2))
    poll(engine, number, moment)
    return decisions(engine, number)[-1]


def load(tmp_path, text: str, capsys) -> tuple[int, str]:
    path = tmp_path / "arrangement.txt"
    path.write_text(text, encoding="utf-8")
    code = feikong(["holidays", "load", str(path), "--by", "运维小李"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_last_day_the_package_covers_is_official(engine):
    d = decided(engine, household(engine), at(2026, 12, 31, 10))
    assert (d.outcome, d.code, d.calendar) == (CUT, "allowed", PACKAGE)
    assert "推算" not in d.reason


def test_new_year_s_day_2027_is_a_computed_holiday_and_the_reason_says_so(engine):
    d = decided(engine, household(engine), at(2027, 1, 1, 10))
    assert (d.outcome, d.code, d.calendar) == (WAIT, "holiday", COMPUTED)
    assert "元旦" in d.reason and "按规则推算" in d.reason and "非正式安排" in d.reason
    assert d.not_before == at(2027, 1, 4, 8, 0)  # Saturday and Sunday join New Year's Day
    assert commands(engine) == []


def test_the_first_working_day_of_2027_cuts_marked_computed(engine):
    number = household(engine)
    d = decided(engine, number, at(2027, 1, 4, 10))
    assert (d.outcome, d.code, d.calendar) == (CUT, "allowed", COMPUTED)
    assert "按规则推算" in d.reason
    assert [c.action for c in commands(engine)] == ["cut"]


@pytest.mark.parametrize("moment, holiday", [
    (at(2027, 2, 6, 10), "春节"),  # the first day of the lunar year
    (at(2027, 4, 5, 10), "清明节"),  # the day of the solar term, a Monday
    (at(2027, 9, 15, 10), "中秋节"),  # a Wednesday
    (at(2027, 10, 1, 10), "国庆节"),
])
def test_the_computed_holidays_of_2027_stop_cuts(engine, moment, holiday):
    d = decided(engine, household(engine), moment)
    assert (d.outcome, d.code, d.calendar) == (WAIT, "holiday", COMPUTED)
    assert holiday in d.reason
    assert commands(engine) == []


def test_a_loaded_2027_arrangement_decides_a_worked_weekend_and_a_day_in_lieu(
        engine, tmp_path, capsys):
    code, out = load(tmp_path, ARRANGEMENT_2027, capsys)
    assert code == 0 and "2027 年节假日安排已载入" in out
    worked_saturday = household(engine)
    d = decided(engine, worked_saturday, at(2027, 2, 20, 10))
    assert (d.outcome, d.code, d.calendar) == (CUT, "allowed", LOADED)
    assert "推算" not in d.reason
    in_lieu = household(engine, number="800002")  # a Wednesday off in lieu: computed it would have cut
    d = decided(engine, in_lieu, at(2027, 2, 10, 10))
    assert (d.outcome, d.code, d.calendar) == (WAIT, "holiday", LOADED)
    assert d.not_before == at(2027, 2, 13, 8, 0)


def test_loading_the_same_arrangement_twice_changes_nothing(engine, tmp_path, capsys):
    assert load(tmp_path, ARRANGEMENT_2027, capsys)[0] == 0
    code, out = load(tmp_path, ARRANGEMENT_2027, capsys)
    assert code == 0 and "未作改动" in out
    with transaction(engine, read_only=True) as s:
        assert len(s.exec(select(HolidayArrangement)).all()) == 1


def test_a_malformed_file_names_its_lines_and_loads_nothing(engine, tmp_path, capsys):
    bad = ARRANGEMENT_2027.replace("班 2027-02-20 春节", "班 2027-02-18 春节").replace(
        "休 2027-06-09 端午节", "休 2027-06-31 端午节")
    code, out = load(tmp_path, bad, capsys)
    assert code == 1
    assert "未载入任何内容" in out
    assert "第 6 行（班 2027-02-18 春节）：2027-02-18 是星期四，调休上班只会在周末" in out
    assert "第 10 行（休 2027-06-31 端午节）：日期不存在" in out
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(HolidayArrangement)).all() == []
        assert s.exec(select(HolidayDay)).all() == []
    d = decided(engine, household(engine), at(2027, 1, 4, 10))
    assert d.calendar == COMPUTED


def test_a_file_missing_a_statutory_holiday_is_refused(engine, tmp_path, capsys):
    code, out = load(tmp_path, ARRANGEMENT_2027.replace("休 2027-09-15 中秋节\n", ""), capsys)
    assert code == 1 and "法定节假日 2027-09-15（中秋节）在文件中不是休息日" in out


def test_a_loaded_year_takes_precedence_over_the_package(engine, tmp_path, capsys):
    text = DOCS_2026.read_text(encoding="utf-8") + "休 2026-11-18 测试假日\n"
    assert load(tmp_path, text, capsys)[0] == 0
    with transaction(engine, read_only=True) as s:
        calendar = loaded_calendar(s)
    assert (calendar.day(dt.date(2026, 11, 18)).holiday,
            calendar.day(dt.date(2026, 11, 18)).source) == ("测试假日", LOADED)


def test_the_documented_2026_file_says_what_the_package_says():
    from app.policy.arrangements import decode_file, parse_arrangement
    from app.policy.holidays import Arrangement

    parsed = parse_arrangement(decode_file(DOCS_2026.read_bytes()))
    loaded = ChinaCalendar([Arrangement(parsed.year, parsed.source, parsed.days)])
    packaged = ChinaCalendar()
    day = dt.date(2026, 1, 1)
    while day.year == 2026:
        mine, theirs = loaded.day(day), packaged.day(day)
        assert (mine.rest, mine.holiday, mine.source) == (theirs.rest, theirs.holiday, LOADED), day
        day += dt.timedelta(days=1)


def test_holidays_show_gives_each_day_and_its_source(engine, tmp_path, capsys):
    assert feikong(["holidays", "show", "2027"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2027 年：按规则推算")
    assert "休 2027-02-06 周六  春节放假  [computed]" in out
    load(tmp_path, ARRANGEMENT_2027, capsys)
    assert feikong(["holidays", "show", "2027"]) == 0
    out = capsys.readouterr().out
    assert "测试用安排" in out and "运维小李" in out
    assert "班 2027-02-20 周六  春节调休上班  [loaded]" in out
    assert "休 2027-02-10 周三  春节放假  [loaded]" in out


@pytest.mark.parametrize("today, warns", [
    (dt.date(2026, 10, 31), False),  # 61 days before 2026-12-31
    (dt.date(2026, 11, 1), True),  # 60 days before
    (dt.date(2026, 12, 31), True),
    (dt.date(2027, 1, 1), True),  # past it: computed now
])
def test_the_warning_comes_from_60_days_before_the_official_calendar_ends(engine, today, warns):
    household(engine)  # an estate on the Chinese calendar
    with transaction(engine, read_only=True) as s:
        status = calendar_status(s, today)
    assert status.official_until == dt.date(2026, 12, 31)
    assert (status.warning is not None) == warns
    if warns:
        assert "2027" in status.warning and "feikong holidays load" in status.warning


def test_review_warns_until_next_year_is_loaded(engine, tmp_path, capsys):
    household(engine)
    now = at(2026, 12, 3, 10)
    with transaction(engine, read_only=True) as s:
        text = format_review(review(s, now=now))
    assert text.startswith("节假日日历 holiday calendar: 节假日安排只正式覆盖到 2026-12-31（还有 28 天）")
    load(tmp_path, ARRANGEMENT_2027, capsys)
    with transaction(engine, read_only=True) as s:
        assert review(s, now=now).calendar_warning is None
        assert calendar_status(s, dt.date(2027, 11, 2)).warning.startswith(
            "节假日安排只正式覆盖到 2027-12-31")


def test_no_warning_where_no_estate_uses_the_chinese_calendar(engine):
    household(engine, estate={"holiday_calendar": "none"})
    with transaction(engine, read_only=True) as s:
        assert calendar_status(s, dt.date(2026, 12, 3)) is None
