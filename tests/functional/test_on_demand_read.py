"""On-demand reads ("read it now"): on a slow bus in the middle of a poll round they go ahead
of the routine polls, but after a restore queued later; the reading is stored like any poll,
and `feikong read` prints it."""

import os
import subprocess
import sys
import time

from sqlmodel import select

from app.commands.models import DONE, EXPIRED, READ, RESTORE, Command
from app.commands.services import queue_read, queue_restore
from app.db import transaction
from app.estate.models import Meter
from tests.conftest import wait_until
from tests.factories import meter_of
from tests.functional.test_worker import attempts, commands


def queue(engine, number, action):
    meter_id = meter_of(engine, number).id
    with transaction(engine) as s:
        meter = s.get(Meter, meter_id)
        command = (queue_read if action == READ else queue_restore)(s, meter, "test")
        s.flush()
        return command.id


def test_a_read_overtakes_the_round_and_a_restore_overtakes_the_read(stack, engine, settings):
    settings.poll_interval_s = 60  # one round, from start-up
    stack.start_sim([list(range(1, 33))], bus_delay_s=0.15)  # 32 meters × 0.15 s = 4.8 s
    stack.sim.meter(0, 32).energy_wh = 123_456.0
    numbers = [stack.household(u, balance_fen=(-500 if u == 31 else 1000), relay_open=(u == 31))
               for u in range(1, 33)]
    stack.start_worker()
    wait_until(lambda: meter_of(engine, numbers[3]).last_read_at is not None, timeout=10)
    read_id = queue(engine, numbers[31], READ)  # the last meter of the round: read it now
    restore_id = queue(engine, numbers[30], RESTORE)  # queued after the read, goes before it
    asked = time.monotonic()
    wait_until(lambda: {c.id: c.state for c in commands(engine)} == {read_id: DONE,
                                                                     restore_id: DONE},
               timeout=10, message=lambda: f"commands: {commands(engine)}")
    took = time.monotonic() - asked
    done = {c.id: c for c in commands(engine)}
    assert done[restore_id].completed_at < done[read_id].completed_at
    assert took < 2.5, f"the read waited {took:.1f} s: it did not overtake the round"
    read_meter, unread = meter_of(engine, numbers[31]), meter_of(engine, numbers[29])
    assert read_meter.last_energy_wh is not None and read_meter.last_energy_wh >= 123_450  # 0.01 kWh steps
    assert unread.last_read_at is None or unread.last_read_at > done[read_id].completed_at
    [attempt] = attempts(engine, read_id)
    assert attempt.outcome == "confirmed" and "read on demand" in attempt.detail


def test_a_read_of_a_silent_meter_expires_without_an_anomaly(stack, engine, settings):
    settings.read_expiry_s = 1.0
    stack.start_sim([[1]])
    number = stack.household(1, balance_fen=1000)
    stack.sim.meter(0, 1).offline = True
    stack.start_worker()
    read_id = queue(engine, number, READ)
    wait_until(lambda: [c.state for c in commands(engine)] == [EXPIRED], timeout=10,
               message=lambda: f"commands: {commands(engine)}")
    assert attempts(engine, read_id)[0].outcome != "confirmed"
    with transaction(engine, read_only=True) as s:
        from app.anomalies.models import COMMAND_EXPIRED, Anomaly
        assert s.exec(select(Anomaly).where(Anomaly.kind == COMMAND_EXPIRED)).all() == []


def test_feikong_read_prints_the_reading(stack, engine, settings, tmp_path):
    stack.start_sim([[2]])
    stack.sim.meter(0, 2).energy_wh = 45_670.0
    number = stack.household(2, balance_fen=1000)
    stack.start_worker()
    env = dict(os.environ, FEIKONG_DATABASE_URL=settings.database_url,
               FEIKONG_VAR_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "app.cli", "read", number, "--wait", "20"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{number}:" in done.stdout and "45.67 kWh" in done.stdout and "供电中" in done.stdout
    unknown = subprocess.run([sys.executable, "-m", "app.cli", "read", "NOSUCH"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "no account NOSUCH" in unknown.stderr
    with transaction(engine, read_only=True) as s:
        assert [c.action for c in s.exec(select(Command))] == [READ]
