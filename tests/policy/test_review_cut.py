"""The cut policy at the worker's polls: one decision per reason, the cut at the first poll the
policy allows, tasks and approvals instead of commands where it says so."""

from app.anomalies.models import COMMAND_EXPIRED, Anomaly
from app.commands.models import CUT
from app.db import transaction
from app.ledger.models import TOPUP
from app.notices.models import BALANCE_EXHAUSTED
from app.policy.models import (APPROVAL, CARE_LIST_EXHAUSTED, CUT_UNDECIDED, MANUAL_CUT, PENDING,
                               REFUSED, TASK, WAIT, CutApproval)
from app.policy.services import decide_approval
from tests.factories import meter_of
from tests.policy.common import (approvals, at, commands, decisions, household, notices,
                                 outcomes, poll, post, tasks)


def test_a_cut_due_at_23_00_is_queued_at_the_first_poll_from_08_00(engine):
    number = household(engine)
    assert poll(engine, number, at(2026, 11, 17, 22, 30)) is False  # the notice goes out now
    assert notices(engine, number) == [(BALANCE_EXHAUSTED, -100)]
    for now in (at(2026, 11, 18, 23, 0), at(2026, 11, 18, 23, 30), at(2026, 11, 19, 7, 59)):
        assert poll(engine, number, now) is False
    assert commands(engine) == []
    assert outcomes(engine, number) == [(WAIT, "notice_lead"), (WAIT, "quiet_hours")]
    assert decisions(engine, number)[1].not_before == at(2026, 11, 19, 8, 0)

    assert poll(engine, number, at(2026, 11, 19, 8, 0)) is True
    assert [c.action for c in commands(engine)] == [CUT]
    assert outcomes(engine, number)[-1] == ("cut", "allowed")
    assert decisions(engine, number)[-1].command_id == commands(engine)[0].id


def test_on_national_day_the_cut_waits_until_the_holiday_ends(engine):
    number = household(engine)
    poll(engine, number, at(2026, 9, 29, 10, 0))  # notice; 24 h later is 30 September 10:00
    for day in range(1, 8):
        assert poll(engine, number, at(2026, 10, day, 11, 0)) is False
    assert outcomes(engine, number) == [(WAIT, "notice_lead"), (WAIT, "holiday")]
    assert decisions(engine, number)[-1].not_before == at(2026, 10, 8, 8, 0)
    assert "国庆节" in decisions(engine, number)[-1].reason
    assert poll(engine, number, at(2026, 10, 8, 8, 0)) is True


def test_a_care_list_household_becomes_a_manager_task_and_never_a_command(engine):
    number = household(engine, care_list=True)
    for hour in (10, 11, 12):
        assert poll(engine, number, at(2026, 11, 18, hour)) is False
    assert commands(engine) == []
    assert [t.kind for t in tasks(engine)] == [CARE_LIST_EXHAUSTED]
    assert number in tasks(engine)[0].detail and "爱心档案" in tasks(engine)[0].detail
    assert outcomes(engine, number) == [(TASK, "care_list")]


def test_a_common_area_account_becomes_a_manager_task(engine):
    number = household(engine, strategy="common_area")
    poll(engine, number, at(2026, 11, 18))
    assert [t.kind for t in tasks(engine)] == [MANUAL_CUT]
    assert commands(engine) == []


def test_an_estate_with_approval_produces_one_pending_approval_and_no_command(engine):
    number = household(engine, estate={"cut_requires_approval": True})
    for hour in (10, 11):
        assert poll(engine, number, at(2026, 11, 18, hour)) is False
    assert [(a.state, a.meter_id) for a in approvals(engine)] == [(PENDING, meter_of(engine, number).id)]
    assert outcomes(engine, number) == [(APPROVAL, "approval_required")]
    assert commands(engine) == []


def test_an_approved_cut_happens_once_notice_and_time_allow(engine):
    number = household(engine, estate={"cut_requires_approval": True})
    poll(engine, number, at(2026, 11, 18, 10))
    with transaction(engine) as s:
        decide_approval(s, s.get(CutApproval, approvals(engine)[0].id), approve=True,
                        by="王经理", now=at(2026, 11, 18, 11))
    assert poll(engine, number, at(2026, 11, 18, 12)) is False  # notice still under 24 h old
    assert poll(engine, number, at(2026, 11, 19, 10)) is True
    assert outcomes(engine, number) == [(APPROVAL, "approval_required"), (WAIT, "notice_lead"),
                                        ("cut", "allowed")]


def test_a_rejected_cut_is_not_made_in_this_episode(engine):
    number = household(engine, estate={"cut_requires_approval": True})
    poll(engine, number, at(2026, 11, 18, 10))
    with transaction(engine) as s:
        decide_approval(s, s.get(CutApproval, approvals(engine)[0].id), approve=False,
                        by="王经理", now=at(2026, 11, 18, 11), note="家中有病人")
    assert poll(engine, number, at(2026, 11, 20, 10)) is False
    assert outcomes(engine, number)[-1] == (REFUSED, "approval_rejected")
    assert tasks(engine) == []


def test_an_estate_with_an_unknown_calendar_is_refused_and_handed_to_a_manager(engine):
    number = household(engine, estate={"holiday_calendar": "hk"})
    for hour in (10, 11):
        assert poll(engine, number, at(2026, 11, 18, hour)) is False
    assert outcomes(engine, number) == [(REFUSED, "calendar_unknown")]
    assert [t.kind for t in tasks(engine)] == [CUT_UNDECIDED]
    assert commands(engine) == []


def test_no_new_cut_while_an_expired_command_is_unresolved(engine):
    number = household(engine)
    meter = meter_of(engine, number)
    with transaction(engine) as s:
        s.add(Anomaly(kind=COMMAND_EXPIRED, meter_id=meter.id, account_id=meter.account_id))
    for hour in (10, 11):
        assert poll(engine, number, at(2026, 11, 19, hour)) is False
    assert outcomes(engine, number) == [(WAIT, "command_unconfirmed")]


def test_money_in_ends_the_episode_and_the_next_one_needs_its_own_notice(engine):
    number = household(engine)
    poll(engine, number, at(2026, 11, 16, 10))  # exhausted: notice
    post(engine, number, 500, at(2026, 11, 16, 12), kind=TOPUP)
    poll(engine, number, at(2026, 11, 16, 13))  # balance 4.00 元: the episode ends
    post(engine, number, -900, at(2026, 11, 18, 9))
    assert poll(engine, number, at(2026, 11, 18, 10)) is False  # the old notice does not count
    assert [k for k, _ in notices(engine, number)].count(BALANCE_EXHAUSTED) == 2
    assert outcomes(engine, number)[-1] == (WAIT, "notice_lead")
    assert poll(engine, number, at(2026, 11, 19, 10)) is True
