"""Faults injected into the real simulator; outcomes read from the command record, the relay
register and the anomaly list."""

import asyncio
import time

import httpx
import pytest
from sqlmodel import select

from app.anomalies.models import (COMMAND_EXPIRED, CUT_REFUSED_KEEP_POWER, GATEWAY_OFFLINE, RELAY_FAULT, ENERGY_BACKWARDS, ENERGY_JUMP, ENERGY_WHILE_OPEN,
                                  METER_OFFLINE, STATE_CHANGED_OFFLINE, Anomaly)
from app.commands.models import CUT, DONE, EXPIRED, RESTORE
from app.commands.services import queue_restore
from app.db import transaction
from app.estate.models import Meter
from meters.protocol import ENERGY_WRAP_WH, PROTOCOLS, format_address
from tests.conftest import wait_until
from tests.factories import balance_of, entries_of, meter_of
from tests.functional.test_worker import attempts, commands, read_relay
from tests.payflow import post_notification, start_payment


# The gateway loop and its meters, in every protocol a gateway may speak (issue 18).
pytestmark = pytest.mark.parametrize("meter_protocol", PROTOCOLS)

def anomalies(engine, kind=None):
    with transaction(engine, read_only=True) as s:
        q = select(Anomaly)
        if kind:
            q = q.where(Anomaly.kind == kind)
        return list(s.exec(q.order_by(Anomaly.id)))


def first_reading(engine, number):
    wait_until(lambda: meter_of(engine, number).last_energy_wh is not None, message="no reading")


@pytest.fixture
def one_meter(stack, engine):
    stack.start_sim([[1]])
    number = stack.household(1, balance_fen=10_000, price="1.0000")
    stack.sim.meter(0, 1).energy_wh = 1_000_000.0
    stack.start_worker()
    first_reading(engine, number)
    return number


def test_energy_jump_is_an_anomaly_and_not_charged(stack, engine, one_meter):
    stack.sim.meter(0, 1).add_energy_wh(50_000)  # 50 kWh within a 0.2 s poll: no breaker passes that
    found = wait_until(lambda: anomalies(engine, ENERGY_JUMP), message="no jump anomaly")
    assert found[0].energy_wh == 50_000
    assert balance_of(engine, one_meter) == 10_000
    stack.sim.meter(0, 1).add_energy_wh(10)  # later use is charged from the new baseline
    wait_until(lambda: balance_of(engine, one_meter) == 10_000 - 1, message="no charge after")


def test_register_going_back_is_an_anomaly_and_not_charged(stack, engine, one_meter):
    stack.sim.meter(0, 1).energy_wh = 400_000.0  # reset or replaced
    wait_until(lambda: anomalies(engine, ENERGY_BACKWARDS), message="no backwards anomaly")
    assert balance_of(engine, one_meter) == 10_000
    assert entries_of(engine, one_meter, "charge") == []


def test_register_wrap_is_charged_as_consumption(stack, engine):
    stack.start_sim([[1]])
    number = stack.household(1, balance_fen=10_000, price="1.0000")
    wrap_wh = ENERGY_WRAP_WH[stack.protocol]  # 2^32 × 10 Wh (Modbus), 999999.99 kWh (DL/T 645)
    stack.sim.meter(0, 1).energy_wh = float(wrap_wh - 10)  # one register unit below the wrap
    stack.start_worker()
    first_reading(engine, number)
    stack.sim.meter(0, 1).add_energy_wh(20)  # the register wraps to 1 (10 Wh)
    wait_until(lambda: balance_of(engine, number) == 10_000 - 2, message="wrap not charged")
    assert meter_of(engine, number).last_energy_wh == 10
    assert anomalies(engine) == []


def test_energy_while_cut_is_one_growing_anomaly_and_not_charged(stack, engine):
    stack.start_sim([[1]])
    number = stack.household(1, balance_fen=-100, relay_open=True)
    stack.start_worker()
    first_reading(engine, number)
    stack.sim.meter(0, 1).add_energy_wh(10)  # counted while the relay reads open: bypass?
    wait_until(lambda: anomalies(engine, ENERGY_WHILE_OPEN), message="no bypass anomaly")
    stack.sim.meter(0, 1).add_energy_wh(10)
    wait_until(lambda: anomalies(engine, ENERGY_WHILE_OPEN)[0].energy_wh == 20,
               message="the episode did not grow")
    assert len(anomalies(engine, ENERGY_WHILE_OPEN)) == 1
    assert balance_of(engine, number) == -100


def test_offline_meter_opens_its_breaker_and_neighbours_keep_being_read(stack, engine):
    stack.start_sim([[1, 2]])
    dead = stack.household(1, balance_fen=1000)
    alive = stack.household(2, balance_fen=1000)
    stack.sim.meter(0, 1).silent = True  # times out: the costly kind of failure
    stack.start_worker()
    wait_until(lambda: anomalies(engine, METER_OFFLINE), timeout=10, message="breaker did not open")
    assert meter_of(engine, dead).online is False
    seen = meter_of(engine, alive).last_read_at
    wait_until(lambda: meter_of(engine, alive).last_read_at > seen, message="neighbour starved")
    assert len(anomalies(engine, METER_OFFLINE)) == 1  # once per outage, not once per poll


def test_meter_back_with_another_relay_state_is_reconciled(stack, engine, settings):
    settings.breaker_probe_s = 0.2
    stack.start_sim([[1]])
    number = stack.household(1, balance_fen=1000)
    stack.sim.meter(0, 1).offline = True
    stack.start_worker()
    wait_until(lambda: meter_of(engine, number).online is False, timeout=10)
    stack.sim.meter(0, 1).relay_open = True  # tripped locally during the outage
    stack.sim.meter(0, 1).offline = False
    wait_until(lambda: anomalies(engine, STATE_CHANGED_OFFLINE), message="no reconcile anomaly")
    assert meter_of(engine, number).relay_open is True
    assert meter_of(engine, number).online is True
    (outage,) = anomalies(engine, METER_OFFLINE)  # kept, resolved by the meter's answer
    assert outage.resolved_at is not None and outage.resolution == "the meter answers again"
    assert anomalies(engine, STATE_CHANGED_OFFLINE)[0].resolved_at is None  # a person's to close


def test_welded_relay_cut_is_never_confirmed_and_expires_as_anomaly(stack, engine, settings):
    settings.cut_expiry_s = 2.5
    stack.start_sim([[1]])
    number = stack.household(1, balance_fen=50, price="1.0000", max_power_w=10**9)
    stack.sim.meter(0, 1).welded = True  # acknowledges a cut, never opens, says nothing
    stack.start_worker()
    first_reading(engine, number)
    stack.sim.meter(0, 1).add_energy_wh(1_000)  # 1 元 against 0.50 元: a cut is due
    wait_until(lambda: [c.state for c in commands(engine, CUT)] == [EXPIRED], timeout=10,
               message=lambda: f"the cut did not expire: {commands(engine)}, balance "
                               f"{balance_of(engine, number)}, {meter_of(engine, number)}")
    cut = commands(engine, CUT)[0]
    assert {a.outcome for a in attempts(engine, cut.id)} == {"mismatch"}
    assert cut.attempts > 1  # tried again: nothing said why it did not open
    assert [a.command_id for a in anomalies(engine, COMMAND_EXPIRED)] == [cut.id]
    assert read_relay(stack, 0, 1) is False  # still supplying
    time.sleep(1.0)  # a few more polls: no new cut is sent to a relay a manager must look at
    assert len(commands(engine, CUT)) == 1


@pytest.mark.parametrize(("fault", "kind", "why"), [
    ("keep_power", CUT_REFUSED_KEEP_POWER, "keep-power mode (保电)"),
    ("relay_fault", RELAY_FAULT, "relay faulty"),
])
def test_a_cut_the_meter_says_it_will_not_do_ends_at_once_with_its_reason(
        stack, engine, settings, fault, kind, why):
    """Issue 18, defect 5: a meter in keep-power mode (or reporting its relay faulty) is not a
    welded relay: the status it reports says why, the cut ends after one attempt with that
    anomaly, and no new cut is queued while it is open."""
    settings.cut_expiry_s = 30
    stack.start_sim([[1]])
    number = stack.household(1, balance_fen=50, price="1.0000", max_power_w=10**9)
    setattr(stack.sim.meter(0, 1), fault, True)
    stack.start_worker()
    first_reading(engine, number)
    stack.sim.meter(0, 1).add_energy_wh(1_000)  # 1 元 against 0.50 元: a cut is due
    wait_until(lambda: [c.state for c in commands(engine, CUT)] == [EXPIRED], timeout=10,
               message=lambda: f"the cut did not end: {commands(engine)}")
    cut = commands(engine, CUT)[0]
    assert cut.attempts == 1
    (anomaly,) = anomalies(engine, kind)
    assert anomaly.command_id == cut.id and why in anomaly.detail
    assert anomalies(engine, COMMAND_EXPIRED) == []
    assert read_relay(stack, 0, 1) is False  # still supplying, as the meter said
    time.sleep(1.0)
    assert len(commands(engine, CUT)) == 1


def test_command_for_a_relay_already_in_place_completes_without_a_write(stack, engine):
    stack.start_sim([[1]])
    number = stack.household(1, balance_fen=1000)
    stack.start_worker()
    first_reading(engine, number)
    meter_id = meter_of(engine, number).id
    with transaction(engine) as s:
        queue_restore(s, s.get(Meter, meter_id), reason="manager asked")
    wait_until(lambda: [c.state for c in commands(engine, RESTORE)] == [DONE])
    assert stack.sim.meter(0, 1).command_counter == 0  # confirmed by a read alone


def test_restore_overtakes_a_poll_round_on_a_slow_bus(stack, engine, settings):
    settings.poll_interval_s = 60  # one round, from start-up
    stack.start_sim([list(range(1, 33))], bus_delay_s=0.15)  # 32 meters × 0.15 s = 4.8 s
    numbers = [stack.household(u, balance_fen=(-500 if u == 32 else 1000), relay_open=(u == 32))
               for u in range(1, 33)]
    stack.start_web()
    stack.start_worker()
    wait_until(lambda: meter_of(engine, numbers[3]).last_read_at is not None, timeout=10)
    sandbox = stack.app.state.providers.sandbox_alipay
    with httpx.Client(base_url=stack.base_url, follow_redirects=False) as client:
        pay = start_payment(client, sandbox, numbers[-1])
        assert post_notification(client, sandbox, sandbox.build_notification(pay)).text == "success"
    paid = time.monotonic()
    wait_until(lambda: [c.state for c in commands(engine, RESTORE)] == [DONE], timeout=10)
    took = time.monotonic() - paid
    last_meter = meter_of(engine, numbers[-2])
    restore = commands(engine, RESTORE)[0]
    assert last_meter.last_read_at is None or restore.completed_at < last_meter.last_read_at
    assert took < 2.0, f"the restore waited {took:.1f} s: it did not overtake the round"
    assert read_relay(stack, 0, 32) is False


def test_silent_gateway_takes_its_meters_offline_and_spares_the_other_gateway(stack, engine):
    stack.start_sim([[1], [1]])
    silent = stack.household(1, balance_fen=1000, gateway_index=0)
    other = stack.household(1, balance_fen=1000, gateway_index=1)
    stack.sim.gateways[0].silent = True
    stack.start_worker()
    wait_until(lambda: meter_of(engine, silent).online is False, timeout=10,
               message="the silent gateway's meter was not marked offline")
    seen = meter_of(engine, other).last_read_at
    wait_until(lambda: meter_of(engine, other).last_read_at > seen, message="other gateway starved")
    assert [a.meter_id for a in anomalies(engine, METER_OFFLINE)] == [meter_of(engine, silent).id]


def test_a_restore_does_not_wait_for_a_neighbours_read_backs(stack, engine, settings):
    """Issue 18, defect 2: a welded neighbour's cut is read back until its deadline; a restore
    queued meanwhile on the same gateway goes out at once, between those read-backs."""
    settings.confirm_timeout_s = 4.0
    settings.cut_expiry_s = 60
    stack.start_sim([[1, 2]])
    welded = stack.household(1, balance_fen=50, price="1.0000", max_power_w=10**9)
    dark = stack.household(2, balance_fen=1000, relay_open=True)
    stack.sim.meter(0, 1).welded = True
    stack.start_worker()
    first_reading(engine, welded)
    stack.sim.meter(0, 1).add_energy_wh(1_000)  # a cut is due, and will not take
    wait_until(lambda: stack.sim.meter(0, 1).command_counter >= 1, message="cut not written")
    meter_id = meter_of(engine, dark).id
    with transaction(engine) as s:  # its read-backs have begun: restore the neighbour now
        queue_restore(s, s.get(Meter, meter_id), reason="manager asked")
    wait_until(lambda: [c.state for c in commands(engine, RESTORE)] == [DONE],
               message="the restore was not done")
    restore = commands(engine, RESTORE)[0]
    cut = commands(engine, CUT)[0]
    # the cut's first attempt is stored at its deadline, after the restore was confirmed
    assert attempts(engine, cut.id) == [] or (
        restore.completed_at < attempts(engine, cut.id)[0].finished_at)
    assert read_relay(stack, 0, 2) is False


def test_a_meter_offline_is_online_again_when_it_answers_a_command(stack, engine, settings):
    """Issue 18, defect 3: a command the meter answers clears its offline mark (and resolves
    the outage) at once, not at the next probe."""
    settings.breaker_probe_s = 600  # the next probe is far away
    stack.start_sim([[1]])
    number = stack.household(1, balance_fen=1000, relay_open=True)
    stack.sim.meter(0, 1).silent = True
    stack.start_worker()
    wait_until(lambda: meter_of(engine, number).online is False, timeout=10,
               message="the silent meter was not marked offline")
    stack.sim.meter(0, 1).silent = False
    meter_id = meter_of(engine, number).id
    with transaction(engine) as s:
        queue_restore(s, s.get(Meter, meter_id), reason="manager asked")
    wait_until(lambda: [c.state for c in commands(engine, RESTORE)] == [DONE], timeout=10,
               message="the restore was not done")
    assert meter_of(engine, number).online is True
    (outage,) = anomalies(engine, METER_OFFLINE)
    assert outage.resolved_at is not None and outage.resolution == "the meter answered a command"


def test_a_whole_gateway_down_is_one_anomaly_with_its_meters(stack, engine, settings):
    """Issue 18, defect 4: a gateway unplugged (connection refused) is one gateway anomaly that
    lists its meters, not one per meter; it is resolved when the gateway answers again."""
    settings.breaker_probe_s = 0.5  # the gateway's back-off stays short for the test
    sim = stack.start_sim([[1, 2, 3], [1]])
    numbers = [stack.household(u, balance_fen=1000) for u in (1, 2, 3)]
    other = stack.household(1, balance_fen=1000, gateway_index=1)
    stack.start_worker()
    for number in numbers:
        first_reading(engine, number)
    stack.lt.run(sim.gateways[0].stop())
    wait_until(lambda: anomalies(engine, GATEWAY_OFFLINE), timeout=10,
               message="no gateway anomaly")
    seen = meter_of(engine, other).last_read_at
    wait_until(lambda: meter_of(engine, other).last_read_at > seen, message="other gateway starved")
    (down,) = anomalies(engine, GATEWAY_OFFLINE)
    assert down.gateway_id is not None and down.meter_id is None
    units = ", ".join(format_address(stack.protocol, u) for u in (1, 2, 3))  # 000000000001 …
    assert f"its 3 meters: {units}" in down.detail
    assert anomalies(engine, METER_OFFLINE) == []
    stack.lt.run(sim.gateways[0].start())
    wait_until(lambda: anomalies(engine, GATEWAY_OFFLINE)[0].resolved_at is not None, timeout=10,
               message="the gateway anomaly was not resolved")
    assert len(anomalies(engine, GATEWAY_OFFLINE)) == 1
    assert anomalies(engine, METER_OFFLINE) == []


def test_a_silent_gateway_is_one_anomaly_and_is_probed_not_polled(stack, engine, settings):
    """A gateway that takes connections and answers no meter at all: one anomaly after a round
    in which nothing answered; while it is down, a round tries a few meters, not all."""
    settings.breaker_probe_s = 600
    sim = stack.start_sim([list(range(1, 9))])
    numbers = [stack.household(u, balance_fen=1000) for u in range(1, 9)]
    stack.start_worker()
    for number in numbers:
        first_reading(engine, number)
    sim.gateways[0].silent = True
    wait_until(lambda: anomalies(engine, GATEWAY_OFFLINE), timeout=15,
               message="no gateway anomaly")
    assert "its 8 meters" in anomalies(engine, GATEWAY_OFFLINE)[0].detail
    assert len(anomalies(engine, METER_OFFLINE)) <= 1  # not one per meter


def test_the_worker_stops_within_seconds_whatever_its_buses_do(stack, engine, settings):
    """Issue 18, defect 7: stopping must not wait for a bus. One gateway is silent with a 20 s
    request timeout (a request is waiting on it), the other a slow bus (0.15 s a transaction)
    with a round under way: the worker stops in a second or two, and says nothing lost."""
    from meters.worker import Worker

    settings.modbus_timeout_s = 20.0
    sim = stack.start_sim([[1, 2], list(range(1, 33))], bus_delay_s=0.15)
    stack.household(1, balance_fen=1000, gateway_index=0)
    busy = [stack.household(u, balance_fen=1000, gateway_index=1) for u in range(1, 33)]
    sim.gateways[0].silent = True

    async def run_then_stop():
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(Worker(engine, settings).run())
        deadline = loop.time() + 10
        while (await asyncio.to_thread(meter_of, engine, busy[2])).last_read_at is None:
            assert loop.time() < deadline, "the slow bus was never read"
            await asyncio.sleep(0.05)
        started = loop.time()
        task.cancel()
        await asyncio.wait({task}, timeout=15)
        return task.done(), loop.time() - started

    done, took = stack.lt.run(run_then_stop(), timeout=40)
    assert done and took < 3.0, f"the worker took {took:.1f} s to stop"
