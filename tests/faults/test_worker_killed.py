"""Fault 1: the meter worker, a real `feikong worker` process, is killed (SIGKILL) while the
meter is confirming a restore a payment queued; restarted (as systemd would), it finishes the
restore: the relay reads back closed over Modbus, the command is done once, the balance right.
Degraded: from the kill until the restore is done."""

import signal
import time

from tests.conftest import wait_until
from tests.factories import balance_of
from tests.faults.figures import audit
from tests.functional.test_worker import commands, read_relay
from tests.functional.test_worker_processes import start_worker, stop
from tests.payflow import post_notification, start_payment


def test_worker_sigkilled_mid_restore(stack, engine, settings, client, tmp_path, fault_report):
    sim = stack.start_sim([[5]], relay_delay_s=2.0)  # the relay takes 2 s to move
    number = stack.household(5, balance_fen=-500, relay_open=True)
    # a command is confirmed within 10 s; on PostgreSQL the dead worker's lease lapses in 3 s
    env = {"FEIKONG_CONFIRM_TIMEOUT_S": "10", "FEIKONG_LEASE_TTL_S": "3"}
    worker, _ = start_worker(settings, tmp_path, "first", **env)
    try:
        sandbox = client.app.state.providers.sandbox_alipay
        pay = start_payment(client, sandbox, number)
        form = sandbox.build_notification(pay)
        assert post_notification(client, sandbox, form).text == "success"
        wait_until(lambda: sim.meter(0, 5).command_counter == 1, timeout=20,
                   message="the restore was not written")
        worker.send_signal(signal.SIGKILL)  # mid-confirmation: the relay has not moved yet
        killed_at = time.monotonic()
        worker.wait(10)
    finally:
        stop(worker)
    assert [c.state for c in commands(engine)] == ["pending"]

    worker, _ = start_worker(settings, tmp_path, "second", **env)  # restarted at once
    restarted_s = time.monotonic() - killed_at
    try:
        wait_until(lambda: [c.state for c in commands(engine)] == ["done"], timeout=30,
                   interval=0.05, message="the restore did not resume after the restart")
        degraded_s = time.monotonic() - killed_at
        assert post_notification(client, sandbox, form).text == "success"  # a late duplicate
    finally:
        stop(worker)
    relay_open = read_relay(stack, 0, 5)
    loss = audit(engine, {pay.out_trade_no: 5000}, restores=1)
    fault_report("worker SIGKILL mid-restore", loss, degraded_s,
                 f"worker restarted after {restarted_s:.1f} s, restore done "
                 f"{degraded_s - restarted_s:.1f} s later; relay reads "
                 f"{'open' if relay_open else 'closed'}; "
                 f"{sim.meter(0, 5).command_counter} relay writes to the meter")
    assert loss.nothing(), loss
    assert relay_open is False
    assert balance_of(engine, number) == 4500
    assert degraded_s < 45  # a sanity bound, not a timing test
