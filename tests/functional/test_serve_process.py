"""`feikong serve` as an operator runs it, a process of its own: it serves the pages and runs the
order jobs, so a payment whose notification never came is found by query and credited without
anyone running anything else, and the billing jobs, so yesterday's common-area charge is shared;
SIGTERM stops it cleanly."""

import datetime as dt
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, update
from sqlmodel import select

from app.billing.jobs import SHARE_DELAY, period_containing
from app.db import transaction, utcnow
from app.orders.models import PAID, PENDING, Order
from bench.common import free_ports
from tests.app.test_orders_jobs import order_of, pay
from tests.billing.test_share_jobs import make_building, runs
from tests.conftest import USE_POSTGRES, wait_until
from tests.factories import balance_of
from tests.identity.support import post


def test_serve_runs_the_order_and_billing_jobs(engine, settings, cut_account, tmp_path):
    # 10 kWh over the two latest local days already due for sharing (each ended SHARE_DELAY
    # ago): wall-clock offsets such as "two days ago" fail in the ten minutes after midnight
    latest_due = period_containing(utcnow() - SHARE_DELAY - dt.timedelta(minutes=1), "day")[0] \
        - dt.timedelta(days=1)
    first = latest_due - dt.timedelta(days=1) + dt.timedelta(hours=1)
    make_building(engine, [(first, 0), (first + dt.timedelta(days=1), 10)])
    port = free_ports(1)
    env = dict(os.environ, FEIKONG_DATABASE_URL=settings.database_url,
               FEIKONG_VAR_DIR=str(tmp_path), FEIKONG_WEB_PORT=str(port),
               FEIKONG_PUBLIC_URL=f"http://127.0.0.1:{port}", FEIKONG_ORDER_JOBS_EVERY_S="0.3",
               FEIKONG_BILLING_JOBS_EVERY_S="0.3")
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "serving on" in log_path.read_text(), timeout=30,
                   message=lambda: f"serve did not start: {log_path.read_text()[-2000:]}")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as web:
            no = pay(web, None, "alipay", cut_account, notify="never")
        assert order_of(engine, no).status == PENDING  # no notification came
        with transaction(engine) as s:  # the resident paid three minutes ago
            s.execute(update(Order).where(Order.out_trade_no == no)
                      .values(created_at=utcnow() - dt.timedelta(minutes=3)))
        wait_until(lambda: order_of(engine, no).status == PAID, timeout=20,
                   message=lambda: f"not queried: {log_path.read_text()[-2000:]}")
        assert balance_of(engine, cut_account) == 4500  # -5.00 元 + 50 元, once
        wait_until(lambda: len(runs(engine)) >= 2, timeout=10,
                   message="the common-area shares of the last two days were not posted")
        assert sum(fen for _, _, fen in runs(engine)) == 558  # 10 kWh × 0.5583 元
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as web:
            ready = web.get("/readyz")
        checks = ready.json()["checks"]  # the jobs ran; no worker runs here: not ready
        assert checks["order_jobs"]["ok"] and checks["billing_jobs"]["ok"], checks
        assert ready.status_code == 503 and not checks["worker"]["ok"]
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(15)
    assert code == 0, log_path.read_text()[-2000:]


@pytest.mark.skipif(not USE_POSTGRES, reason="several web processes need PostgreSQL")
def test_serve_in_two_processes_shares_one_port(engine, settings, cut_account, tmp_path):
    """Two web processes on one port: a storm of top-ups all answered; with the first process
    stopped, the second still answers on the same port."""
    port = free_ports(1)
    env = dict(os.environ, FEIKONG_DATABASE_URL=settings.database_url,
               FEIKONG_VAR_DIR=str(tmp_path), FEIKONG_WEB_PORT=str(port),
               FEIKONG_PUBLIC_URL=f"http://127.0.0.1:{port}")
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--processes", "2"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "serving on" in log_path.read_text(), timeout=30,
                   message=lambda: f"serve did not start: {log_path.read_text()[-2000:]}")
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert len(children) == 2

        def top_up(_):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as web:
                return post(web, f"/a/{cut_account}/topup",
                            {"amount": "20", "channel": "alipay"}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(top_up, range(40))) == [303] * 40
        with transaction(engine, read_only=True) as s:
            assert s.exec(select(func.count()).select_from(Order)).one() == 40
        os.kill(int(children[0]), signal.SIGTERM)  # the first process stops: the second serves
        wait_until(lambda: not Path(f"/proc/{children[0]}/stat").exists()
                   or Path(f"/proc/{children[0]}/stat").read_text().split()[2] == "Z",
                   timeout=10, message="the first web process did not stop")
        assert list(map(top_up, range(3))) == [303] * 3
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(15)
    assert code == 0, log_path.read_text()[-2000:]


@pytest.mark.skipif(USE_POSTGRES, reason="the refusal is SQLite's")
def test_serve_in_two_processes_is_refused_on_sqlite(settings, tmp_path):
    env = dict(os.environ, FEIKONG_DATABASE_URL=settings.database_url,
               FEIKONG_VAR_DIR=str(tmp_path), FEIKONG_WEB_PORT=str(free_ports(1)))
    done = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--processes", "2"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "needs PostgreSQL" in done.stderr


@pytest.mark.skipif(not USE_POSTGRES, reason="several web processes need PostgreSQL")
@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "so_reuseport"])
def test_serve_in_two_processes_will_not_share_a_port_someone_listens_on(settings, tmp_path,
                                                                          reuse_port):
    """Another server on the port (an older `serve` still running listens with SO_REUSEPORT,
    which would otherwise let the two share it, silently): refused, with the reason."""
    import socket

    port = free_ports(1)
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if reuse_port:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", port))
    other.listen()
    try:
        env = dict(os.environ, FEIKONG_DATABASE_URL=settings.database_url,
                   FEIKONG_VAR_DIR=str(tmp_path), FEIKONG_WEB_PORT=str(port))
        done = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--processes", "2"],
                              env=env, capture_output=True, text=True, timeout=60)
    finally:
        other.close()
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "in use" in done.stderr


@pytest.mark.skipif(not USE_POSTGRES, reason="several web processes need PostgreSQL")
def test_a_killed_web_process_is_replaced_and_the_jobs_go_on(engine, settings, cut_account,
                                                             tmp_path):
    """SIGKILL each child of `serve --processes 2` in turn (the first runs the order jobs): the
    supervisor says why and starts another within seconds, the port keeps answering, and an
    order whose notification never came is still queried at its provider by the jobs."""
    port = free_ports(1)
    env = dict(os.environ, FEIKONG_DATABASE_URL=settings.database_url,
               FEIKONG_VAR_DIR=str(tmp_path), FEIKONG_WEB_PORT=str(port),
               FEIKONG_PUBLIC_URL=f"http://127.0.0.1:{port}", FEIKONG_ORDER_JOBS_EVERY_S="0.3")
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--processes", "2"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)

    def children() -> list[str]:
        return Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()

    def answers() -> bool:
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as web:
                return web.get(f"/a/{cut_account}").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(lambda: "serving on" in log_path.read_text(), timeout=30,
                   message=lambda: f"serve did not start: {log_path.read_text()[-2000:]}")
        original = children()
        assert len(original) == 2
        for turn in range(2):  # each of the first two children once (one runs the jobs)
            before = children()
            os.kill(int(original[turn]), signal.SIGKILL)
            assert answers()  # the other child serves meanwhile
            wait_until(lambda: len(children()) == 2 and children() != before, timeout=10,
                       message=lambda: f"not replaced: {log_path.read_text()[-2000:]}")
            wait_until(answers, timeout=10)
        assert log_path.read_text().count("killed by SIGKILL; starting another") == 2
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as web:
            no = pay(web, None, "alipay", cut_account, notify="never")
        with transaction(engine) as s:  # the resident paid three minutes ago
            s.execute(update(Order).where(Order.out_trade_no == no)
                      .values(created_at=utcnow() - dt.timedelta(minutes=3)))
        # queried at the provider by the jobs' process, whichever it is now (the sandbox's
        # cashier lives in the memory of the process that served it, so the answer may be
        # "not paid": that the order was asked about is what shows the jobs go on)
        wait_until(lambda: order_of(engine, no).queried_at is not None, timeout=20,
                   message=lambda: f"not queried: {log_path.read_text()[-2000:]}")
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(15)
    assert code == 0, log_path.read_text()[-2000:]
