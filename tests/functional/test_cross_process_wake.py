"""On PostgreSQL the web app and the worker may be separate processes: a payment credited by
the web app wakes `feikong worker` through LISTEN/NOTIFY, not through the periodic sweep."""

import os
import subprocess
import sys
import time

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from tests.conftest import USE_POSTGRES, wait_until
from tests.functional.test_worker import commands, read_relay
from tests.payflow import post_notification, start_payment

pytestmark = pytest.mark.skipif(not USE_POSTGRES, reason="LISTEN/NOTIFY is PostgreSQL's")


def test_payment_in_web_process_wakes_worker_process(stack, engine, settings, tmp_path):
    stack.start_sim([[3]])
    number = stack.household(3, balance_fen=-500, relay_open=True)

    env = dict(os.environ, FEIKONG_DATABASE_URL=settings.database_url,
               FEIKONG_VAR_DIR=str(tmp_path), FEIKONG_SWEEP_INTERVAL_S="60",
               FEIKONG_POLL_INTERVAL_S="60")
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: ": 1 gateways" in (tmp_path / "worker.log").read_text(),
                   message="worker did not start")
        time.sleep(0.5)  # let its LISTEN connection settle
        with TestClient(create_app(settings, engine), follow_redirects=False) as client:
            sandbox = client.app.state.providers.sandbox_alipay
            pay = start_payment(client, sandbox, number)
            assert post_notification(client, sandbox, sandbox.build_notification(pay)).text == "success"
            paid = time.monotonic()
            wait_until(lambda: [c.state for c in commands(engine)] == ["done"], timeout=5,
                       message="the worker process did not restore: NOTIFY not heard")
        assert time.monotonic() - paid < 5  # far inside the 60 s sweep
        assert read_relay(stack, 0, 3) is False
    finally:
        worker.terminate()
        worker.wait(10)
