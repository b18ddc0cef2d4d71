"""Fault 2: one of the two web processes of `feikong serve --processes 2` (the first: it runs
the order jobs too) is killed (SIGKILL) in the middle of a storm of notifications from 20
senders; each sender notifies again until acknowledged, as Alipay does. Every paid order is
credited exactly once, the top-ups add up to the payments, and the supervisor starts another
process. Degraded: from the kill until notifications were acknowledged again."""

import os
import signal
import time

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select

from app.db import transaction
from app.orders.models import RefusedNotification
from tests.conftest import USE_POSTGRES, wait_until
from tests.faults.figures import audit
from tests.faults.storm import Storm, alipay_signer, make_orders, serve

pytestmark = pytest.mark.skipif(not USE_POSTGRES, reason="serve --processes needs PostgreSQL "
                                "(refused on SQLite, one writer at a time)")


def test_web_child_sigkilled_mid_storm(engine, settings, tmp_path, fault_report):
    orders = make_orders(engine, 3000)  # more than the storm will take
    signer = alipay_signer(tmp_path)
    server = serve(settings.database_url, tmp_path, "--processes", "2")
    try:
        original = server.children()
        assert len(original) == 2
        storm = Storm(server.base_url, signer, orders, threads=20).start()
        wait_until(lambda: storm.acked >= 100 or storm.errors, timeout=60,
                   message="the storm did not get going")
        victim = original[0]  # the first process: it runs the order jobs as well
        os.kill(victim, signal.SIGKILL)
        killed_at, acked_at_kill = time.monotonic(), storm.acked
        wait_until(lambda: len(server.children()) == 2 and victim not in server.children(),
                   timeout=30, message=lambda: f"not replaced: {server.tail()}")
        replaced_s = time.monotonic() - killed_at
        at_replacement = storm.acked
        wait_until(lambda: storm.acked >= at_replacement + 100 or storm.took_all()
                   or storm.errors, timeout=60, message="the storm stalled after the kill")
        storm.stop_taking()
        storm.join(120)
        with httpx.Client(base_url=server.base_url, timeout=10) as web:  # fresh connections,
            answers = [web.get("/healthz", headers={"connection": "close"}).status_code
                       for _ in range(12)]  # spread over both processes by the kernel
    finally:
        code = server.stop()
    degraded_s = storm.degraded_since(killed_at)
    failed = storm.failures(killed_at)
    loss = audit(engine, storm.paid)
    fault_report("web child SIGKILL mid-storm", loss, degraded_s,
                 f"killed with {acked_at_kill} of {len(storm.paid)} orders acknowledged, "
                 f"{len(storm.attempts)} notifications sent, "
                 f"{len(failed)} failed and were sent again "
                 f"({', '.join(sorted({a.what for a in failed})) or 'none'}); "
                 f"replacement process after {replaced_s:.1f} s")
    assert loss.nothing(), loss
    assert "killed by SIGKILL; starting another" in server.log.read_text()
    assert answers == [200] * 12
    assert code == 0, server.tail()
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(func.count()).select_from(RefusedNotification)).one() == 0
    assert degraded_s < 45  # a sanity bound, not a timing test
