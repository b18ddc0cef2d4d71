"""The cut policy in the running worker, against the simulator: a care-list household and an
estate that approves its cuts (test estates otherwise cut at any hour: see tests/factories.py)."""

from sqlmodel import select

from app.commands.models import CUT, DONE
from app.db import transaction, utcnow
from app.estate.models import Estate
from app.policy.models import CARE_LIST_EXHAUSTED, PENDING, CutApproval
from app.policy.services import decide_approval
from tests.conftest import wait_until
from tests.factories import meter_of
from tests.functional.test_worker import read_relay
from tests.policy.common import approvals, commands, outcomes, tasks


def test_a_care_list_household_out_of_money_stays_supplied_and_goes_to_a_manager(stack, engine):
    sim = stack.start_sim([[1]])
    number = stack.household(1, balance_fen=100, price="1.0000", max_power_w=10**9, care_list=True)
    stack.start_worker()
    wait_until(lambda: meter_of(engine, number).last_energy_wh is not None)
    sim.meter(0, 1).add_energy_wh(2_000)  # 2 元 against 1 元
    wait_until(lambda: tasks(engine), message="no manager task")
    seen = meter_of(engine, number).last_read_at
    wait_until(lambda: meter_of(engine, number).last_read_at > seen)  # polls go on
    assert [t.kind for t in tasks(engine)] == [CARE_LIST_EXHAUSTED]
    assert commands(engine) == []
    assert outcomes(engine, number) == [("task", "care_list")]
    assert read_relay(stack, 0, 1) is False


def test_an_approved_cut_is_made_and_confirmed(stack, engine):
    sim = stack.start_sim([[1]])
    number = stack.household(1, balance_fen=100, price="1.0000", max_power_w=10**9)
    with transaction(engine) as s:
        estate = s.exec(select(Estate)).one()
        estate.cut_requires_approval = True
    stack.start_worker()
    wait_until(lambda: meter_of(engine, number).last_energy_wh is not None)
    sim.meter(0, 1).add_energy_wh(2_000)
    wait_until(lambda: [a.state for a in approvals(engine)] == [PENDING], message="no approval")
    assert commands(engine) == []
    with transaction(engine) as s:
        decide_approval(s, s.get(CutApproval, approvals(engine)[0].id), approve=True,
                        by="王经理", now=utcnow())
    # Unchanged readings are judged again only every `full_check_s`; a little use is judged
    # at once.
    sim.meter(0, 1).add_energy_wh(10)
    wait_until(lambda: [(c.action, c.state) for c in commands(engine)] == [(CUT, DONE)],
               message=lambda: f"the approved cut was not made: {outcomes(engine, number)} {approvals(engine)} {commands(engine)}")
    assert read_relay(stack, 0, 1) is True
