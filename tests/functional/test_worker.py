"""The worker against the real simulator: consumption becomes charges, payments become restores."""

import datetime as dt

import httpx
import pytest
from sqlmodel import select

from app.commands.models import CUT, DONE, PENDING, RESTORE, Command, CommandAttempt
from app.billing.services import post_stale_accruals
from app.db import transaction, utcnow
from app.estate.models import Reading
from meters.bus import open_bus
from meters.protocol import PROTOCOLS
from tests.conftest import wait_until
from tests.factories import balance_of, entries_of, meter_of
from tests.payflow import post_notification, start_payment
from tests.identity.support import bound_resident


# The gateway loop and its meters, in every protocol a gateway may speak (issue 18).
pytestmark = pytest.mark.parametrize("meter_protocol", PROTOCOLS)

def commands(engine, action=None):
    with transaction(engine) as s:
        q = select(Command)
        if action:
            q = q.where(Command.action == action)
        return list(s.exec(q.order_by(Command.id)))


def attempts(engine, command_id):
    with transaction(engine) as s:
        return list(s.exec(select(CommandAttempt).where(CommandAttempt.command_id == command_id)))


def read_relay(stack, gateway_index, unit_id) -> bool:
    """The relay read from the simulator in the gateway's protocol, as a real client sees it:
    True when open (supply cut)."""
    gw = stack.sim.gateways[gateway_index]

    async def read():
        client = open_bus(gw.protocol, gw.host, gw.port, timeout=1.0)
        try:
            return (await client.read_relay(unit_id)).open
        finally:
            await client.close()

    return stack.lt.run(read())


def test_consumption_becomes_charges_to_the_fen(stack, engine):
    sim = stack.start_sim([[1]])
    # Energy is added in steps no 60 A breaker passes in a poll interval: a big breaker here.
    number = stack.household(1, balance_fen=10_000, price="0.5583", max_power_w=10**9)
    stack.start_worker()
    wait_until(lambda: meter_of(engine, number).last_energy_wh is not None, message="no first reading")

    sim.meter(0, 1).add_energy_wh(12_340)  # 12.34 kWh × 0.5583 = 6.889422 元 → 689 fen
    wait_until(lambda: balance_of(engine, number) == 10_000 - 689, message="charge not accrued")
    sim.meter(0, 1).add_energy_wh(10)  # +0.005583: exact 6.895005 → 690 fen in all
    wait_until(lambda: balance_of(engine, number) == 10_000 - 690, message="carry not accrued")
    # The hour's charge is posted after it (here by the sweep; by the first reading of the next
    # hour had one come): one entry, or two should the test have run across an hour's end.
    assert len(entries_of(engine, number, "charge")) <= 1
    post_stale_accruals(engine, utcnow() + dt.timedelta(hours=1))
    charges = entries_of(engine, number, "charge")
    assert 1 <= len(charges) <= 2
    assert (sum(c.amount_fen for c in charges), sum(c.energy_wh for c in charges)) == (-690, 12_350)
    assert balance_of(engine, number) == 10_000 - 690


def test_exhausted_balance_queues_a_cut_and_the_meter_confirms_it(stack, engine):
    sim = stack.start_sim([[1]])
    number = stack.household(1, balance_fen=100, price="1.0000", max_power_w=10**9)
    stack.start_worker()
    wait_until(lambda: meter_of(engine, number).last_energy_wh is not None)
    sim.meter(0, 1).add_energy_wh(2_000)  # 2 元 against 1 元
    wait_until(lambda: [c.state for c in commands(engine, CUT)] == [DONE], message="cut not done")
    assert balance_of(engine, number) == -100
    assert read_relay(stack, 0, 1) is True
    assert meter_of(engine, number).relay_open is True


def test_restore_for_a_silent_meter_is_retried_then_completes(stack, engine):
    sim = stack.start_sim([[1]])
    number = stack.household(1, balance_fen=-500, relay_open=True)
    sim.meter(0, 1).offline = True
    stack.start_web()
    stack.start_worker()
    sandbox = stack.app.state.providers.sandbox_alipay
    with httpx.Client(base_url=stack.base_url, follow_redirects=False) as client:
        pay = start_payment(client, sandbox, number)
        assert post_notification(client, sandbox, sandbox.build_notification(pay)).text == "success"
        restore = wait_until(lambda: [c for c in commands(engine, RESTORE) if c.attempts >= 2],
                             message="restore was not retried")[0]
        assert restore.state == PENDING
        bound_resident(engine, client, stack.settings, number)  # the resident sees the supply
        # Modbus: the gateway answers 0x0B for the meter; DL/T 645 cannot say it: no answer
        offline = ({("timeout", None)} if stack.protocol == "dlt645_tcp"
                   else {("exception", 0x0B)})
        assert {(a.outcome, a.exception_code) for a in attempts(engine, restore.id)} == offline
        assert "正在恢复供电" in client.get(f"/a/{number}").text

        sim.meter(0, 1).offline = False
        wait_until(lambda: commands(engine, RESTORE)[0].state == DONE, timeout=15,
                   message="restore did not complete after the meter came back")
        assert read_relay(stack, 0, 1) is False
        assert "供电中" in client.get(f"/a/{number}").text



def test_gateway_added_while_running_is_picked_up_on_first_command(stack, engine):
    stack.start_worker()  # no gateways yet
    stack.start_sim([[4]])
    number = stack.household(4, balance_fen=-500, relay_open=True)
    stack.start_web()
    sandbox = stack.app.state.providers.sandbox_alipay
    with httpx.Client(base_url=stack.base_url, follow_redirects=False) as client:
        pay = start_payment(client, sandbox, number)
        assert post_notification(client, sandbox, sandbox.build_notification(pay)).text == "success"
    wait_until(lambda: [c.state for c in commands(engine)] == [DONE], timeout=5,
               message="the new gateway's restore was not run")
    assert read_relay(stack, 0, 4) is False


def test_unchanged_readings_only_move_the_reading_time(stack, engine, settings):
    settings.full_check_s = 3600  # no full pass after the first: the quick path is taken
    stack.start_sim([[1]])
    number = stack.household(1, balance_fen=10_000, max_power_w=10**9)
    stack.start_worker()
    first = wait_until(lambda: meter_of(engine, number).last_read_at, message="no reading")
    wait_until(lambda: meter_of(engine, number).last_read_at > first, message="time did not move")
    with transaction(engine, read_only=True) as s:
        assert len(s.exec(select(Reading)).all()) == 1  # the first reading only
    stack.sim.meter(0, 1).add_energy_wh(1_000)  # a change is judged in full: charged
    wait_until(lambda: balance_of(engine, number) == 10_000 - 56, message="change not charged")  # 55.83 fen


def test_a_restore_by_the_button_arms_the_relay_and_the_resident_closes_it(stack, engine):
    """Issue 18: a strategy that restores by the button (允许合闸) arms the relay; the command is
    confirmed when the meter reports it armed, the page asks the resident to press the
    meter's button, and says 供电中 once they have."""
    sim = stack.start_sim([[1]])
    number = stack.household(1, balance_fen=-500, relay_open=True, strategy="residential_button")
    stack.start_web()
    stack.start_worker()
    sandbox = stack.app.state.providers.sandbox_alipay
    with httpx.Client(base_url=stack.base_url, follow_redirects=False) as client:
        pay = start_payment(client, sandbox, number)
        assert post_notification(client, sandbox, sandbox.build_notification(pay)).text == "success"
        wait_until(lambda: [c.state for c in commands(engine, RESTORE)] == [DONE],
                   message="the arming restore was not confirmed")
        assert read_relay(stack, 0, 1) is True  # still open: armed, waiting for the button
        assert sim.meter(0, 1).close_allowed
        assert meter_of(engine, number).close_allowed is True
        bound_resident(engine, client, stack.settings, number)
        assert "请按电表上的按钮合闸" in client.get(f"/a/{number}").text

        assert sim.meter(0, 1).press_button()
        wait_until(lambda: meter_of(engine, number).relay_open is False,
                   message="the poll did not see the relay closed")
        assert meter_of(engine, number).close_allowed is False
        page = client.get(f"/a/{number}").text
        assert "供电中" in page and "请按电表上的按钮合闸" not in page
