"""Real worker processes: killed mid-command (SIGKILL), and two of them sharing gateways."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from app.db import transaction
from app.estate.models import Gateway
from tests.conftest import USE_POSTGRES, wait_until
from tests.factories import balance_of, entries_of
from tests.functional.test_worker import commands, read_relay
from tests.payflow import post_notification, start_payment


def start_worker(settings, tmp_path: Path, name: str, **extra_env) -> tuple[subprocess.Popen, Path]:
    env = dict(os.environ, FEIKONG_DATABASE_URL=settings.database_url,
               FEIKONG_VAR_DIR=str(tmp_path), FEIKONG_POLL_INTERVAL_S="0.5",
               FEIKONG_SWEEP_INTERVAL_S="0.2", **extra_env)
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    wait_until(lambda: " gateways, " in log.read_text() or proc.poll() is not None,
               message=f"{name} did not start")
    assert proc.poll() is None, log.read_text()
    return proc, log


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


def test_worker_killed_mid_restore_resumes_after_restart(stack, engine, settings, client, tmp_path):
    sim = stack.start_sim([[5]], relay_delay_s=2.0)  # the relay takes 2 s to move
    number = stack.household(5, balance_fen=-500, relay_open=True)
    env = {"FEIKONG_CONFIRM_TIMEOUT_S": "10", "FEIKONG_LEASE_TTL_S": "3"}  # on PostgreSQL the
    worker, _ = start_worker(settings, tmp_path, "first", **env)  # dead one's lease must lapse
    try:
        sandbox = client.app.state.providers.sandbox_alipay
        pay = start_payment(client, sandbox, number)
        form = sandbox.build_notification(pay)
        assert post_notification(client, sandbox, form).text == "success"
        wait_until(lambda: sim.meter(0, 5).command_counter == 1,
                   message="the restore was not written")
        worker.send_signal(signal.SIGKILL)  # mid-confirmation: the relay has not moved yet
        worker.wait(10)
    finally:
        stop(worker)
    assert [c.state for c in commands(engine)] == ["pending"]

    worker, _ = start_worker(settings, tmp_path, "second", **env)
    try:
        wait_until(lambda: [c.state for c in commands(engine)] == ["done"], timeout=15,
                   message="the restore did not resume after the restart")
        assert post_notification(client, sandbox, form).text == "success"  # a late duplicate
    finally:
        stop(worker)
    assert read_relay(stack, 0, 5) is False
    assert [e.amount_fen for e in entries_of(engine, number, "topup")] == [5000]
    assert balance_of(engine, number) == 4500


def holders(engine) -> dict[int, str | None]:
    with transaction(engine, read_only=True) as s:
        return {g.id: g.leased_by for g in s.exec(select(Gateway).order_by(Gateway.id))}


@pytest.mark.skipif(not USE_POSTGRES, reason="several workers share gateways on PostgreSQL")
def test_two_workers_share_gateways_and_take_over_a_dead_ones(stack, engine, settings, client,
                                                             tmp_path):
    sim = stack.start_sim([[1], [1], [1], [1]])
    numbers = [stack.household(1, balance_fen=-500, relay_open=True, gateway_index=g)
               for g in range(4)]
    env = {"FEIKONG_LEASE_TTL_S": "3"}
    a, _ = start_worker(settings, tmp_path, "a", **env)
    b, _ = start_worker(settings, tmp_path, "b", **env)
    try:
        def split_two_ways():
            held = holders(engine)
            names = [h for h in held.values() if h]
            return len(names) == 4 and sorted(names.count(n) for n in set(names)) == [2, 2]

        wait_until(split_two_ways, timeout=10, message="the gateways were not shared 2 + 2")
        a_holds = [gid for gid, h in holders(engine).items() if h and f":{a.pid}:" in h]
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        wait_until(lambda: all(h and f":{b.pid}:" in h for h in holders(engine).values()),
                   timeout=3 * 4 / 3 + 3, message="b did not take over a's gateways")
        gateway_index = a_holds[0] - min(holders(engine))  # gateways were made in sim order
        sandbox = client.app.state.providers.sandbox_alipay
        pay = start_payment(client, sandbox, numbers[gateway_index])
        assert post_notification(client, sandbox, sandbox.build_notification(pay)).text == "success"
        wait_until(lambda: [c.state for c in commands(engine)] == ["done"], timeout=5,
                   message="the restore on a taken-over gateway did not run")
        assert read_relay(stack, gateway_index, 1) is False
    finally:
        stop(a)
        stop(b)
