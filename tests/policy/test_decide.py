"""The cut policy as a pure function: each rule, with the real holiday calendar."""

import datetime as dt

import pytest

from app.estate.models import Account, Estate
from app.policy.holidays import COMPUTED, ChinaCalendar, calendar_for
from app.policy.models import APPROVAL, APPROVED, CUT, NONE, PENDING, REFUSED, REJECTED, TASK, WAIT
from app.policy.services import decide_cut
from app.policy.strategies import COMMON_AREA, RESIDENTIAL
from tests.policy.common import at

CN = ChinaCalendar()


def decide(now, *, balance_fen=-100, warned_at=None, approval=None, strategy=RESIDENTIAL,
           unconfirmed_command=False, estate=None, **account):
    warned_at = warned_at if warned_at is not None else now - dt.timedelta(hours=25)
    return decide_cut(now, balance_fen=balance_fen,
                      account=Account(strategy="residential", **account),
                      estate=estate or Estate(name="翠苑"), strategy=strategy,
                      warned_at=warned_at, approval=approval, holidays=CN,
                      unconfirmed_command=unconfirmed_command)


def test_a_cut_due_at_23_00_waits_until_08_00():
    decision = decide(at(2026, 11, 18, 23, 0))  # a Wednesday
    assert (decision.outcome, decision.code) == (WAIT, "quiet_hours")
    assert decision.not_before == at(2026, 11, 19, 8, 0)
    assert "夜间不停电" in decision.reason and "2026-11-19 08:00" in decision.reason


def test_on_national_day_the_cut_waits_until_the_holiday_ends():
    decision = decide(at(2026, 10, 1, 10, 0))
    assert (decision.outcome, decision.code) == (WAIT, "holiday")
    assert decision.not_before == at(2026, 10, 8, 8, 0)  # 1–7 October off; the 8th from 08:00
    assert "国庆节" in decision.reason


def test_the_evening_before_a_holiday_waits_past_the_whole_holiday():
    decision = decide(at(2026, 9, 30, 21, 0))
    assert (decision.outcome, decision.code, decision.not_before) == (
        WAIT, "quiet_hours", at(2026, 10, 8, 8, 0))


@pytest.mark.parametrize("now", [
    at(2026, 10, 10, 10, 0),  # Saturday worked to make up for National Day (调休上班)
    at(2026, 11, 21, 10, 0),  # an ordinary Saturday: a weekend is not a public holiday
    at(2026, 11, 18, 8, 0),  # the first minute after the quiet hours
    at(2026, 11, 18, 19, 59),  # the last minute before them
])
def test_a_cut_goes_ahead_on_an_ordinary_day_outside_quiet_hours(now):
    assert decide(now).outcome == CUT


def test_past_the_package_s_last_year_an_ordinary_day_cuts_and_says_the_calendar_was_computed():
    year = CN.last_year + 1
    decision = decide(at(year, 3, 10, 10, 0))
    assert (decision.outcome, decision.calendar) == (CUT, COMPUTED)
    assert "按规则推算" in decision.reason


def test_an_estate_naming_an_unknown_calendar_is_refused():
    decision = decide_cut(at(2026, 11, 18), balance_fen=-100, account=Account(),
                          estate=Estate(name="翠苑"), strategy=RESIDENTIAL,
                          warned_at=at(2026, 11, 17), approval=None,
                          holidays=calendar_for("hk"))
    assert (decision.outcome, decision.code, decision.calendar) == (REFUSED, "calendar_unknown",
                                                                    None)
    assert "hk" in decision.reason and "不自动停电" in decision.reason


def test_no_cut_before_the_exhausted_notice_is_lead_hours_old():
    decision = decide(at(2026, 11, 18, 15, 0), warned_at=at(2026, 11, 18, 9, 0))
    assert (decision.outcome, decision.code) == (WAIT, "notice_lead")
    assert decision.not_before == at(2026, 11, 19, 9, 0)


def test_a_notice_lead_ending_at_night_waits_for_the_morning():
    decision = decide(at(2026, 11, 18, 15, 0), warned_at=at(2026, 11, 17, 22, 0))
    assert (decision.code, decision.not_before) == ("notice_lead", at(2026, 11, 19, 8, 0))


def test_no_cut_without_a_notice():
    decision = decide_cut(at(2026, 11, 18), balance_fen=-100, account=Account(),
                          estate=Estate(name="翠苑"), strategy=RESIDENTIAL, warned_at=None,
                          approval=None, holidays=CN)
    assert (decision.outcome, decision.code, decision.not_before) == (WAIT, "no_notice", None)


def test_a_care_list_household_goes_to_a_manager():
    decision = decide(at(2026, 11, 18), care_list=True)
    assert (decision.outcome, decision.code) == (TASK, "care_list")
    assert "爱心档案" in decision.reason


def test_a_common_area_account_is_never_cut_automatically():
    assert (decide(at(2026, 11, 18), strategy=COMMON_AREA).outcome) == TASK


def test_an_unknown_strategy_is_refused():
    assert decide(at(2026, 11, 18), strategy=None).code == "unknown_strategy"


@pytest.mark.parametrize("approval, outcome", [
    (None, APPROVAL), (PENDING, APPROVAL), (REJECTED, REFUSED), (APPROVED, CUT),
])
def test_an_estate_with_approval_cuts_only_once_approved(approval, outcome):
    estate = Estate(name="翠苑", cut_requires_approval=True)
    assert decide(at(2026, 11, 18), estate=estate, approval=approval).outcome == outcome


def test_an_approved_cut_still_waits_for_the_morning():
    estate = Estate(name="翠苑", cut_requires_approval=True)
    decision = decide(at(2026, 11, 18, 23, 0), estate=estate, approval=APPROVED)
    assert decision.code == "quiet_hours"


@pytest.mark.parametrize("balance_fen, cut_below_fen, outcome", [
    (0, 0, NONE), (-1, 0, CUT), (-400, -500, NONE), (-501, -500, CUT),  # overdraft of 5 元
])
def test_the_cut_line_is_zero_or_the_overdraft(balance_fen, cut_below_fen, outcome):
    decision = decide(at(2026, 11, 18), balance_fen=balance_fen, cut_below_fen=cut_below_fen)
    assert decision.outcome == outcome


def test_quiet_hours_equal_at_both_ends_mean_none():
    estate = Estate(name="翠苑", quiet_start="00:00", quiet_end="00:00")
    assert decide(at(2026, 11, 18, 23, 0), estate=estate).outcome == CUT


def test_quiet_hours_within_one_day():
    estate = Estate(name="翠苑", quiet_start="12:00", quiet_end="14:00")
    decision = decide(at(2026, 11, 18, 12, 30), estate=estate)
    assert (decision.code, decision.not_before) == ("quiet_hours", at(2026, 11, 18, 14, 0))


def test_quiet_hours_that_cannot_be_read_are_refused():
    estate = Estate(name="翠苑", quiet_start="8pm", quiet_end="08:00")
    assert decide(at(2026, 11, 18), estate=estate).code == "settings_invalid"


def test_a_meter_whose_last_command_expired_waits_for_a_person():
    decision = decide(at(2026, 11, 18), unconfirmed_command=True)
    assert (decision.outcome, decision.code) == (WAIT, "command_unconfirmed")
