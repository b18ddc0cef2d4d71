"""Messages from the engine's own notices: the worker cuts a household over Modbus (the
simulator) and restores it, and the residents hear of both; `feikong serve` runs the message jobs
by itself, so a confirmation reaches the SMS stand-in within seconds with nobody sweeping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from sqlmodel import select

from app.commands.services import queue_restore
from app.db import transaction
from app.estate.models import Meter
from app.messages.models import SENT, SMS, WECHAT_TEMPLATE
from app.notices.models import PAYMENT_RECEIVED, POWER_CUT, POWER_RESTORED, Notice
from bench.common import free_ports
from standins import sms as sms_standin
from tests.conftest import wait_until
from tests.factories import account_by_number, meter_of
from tests.messages.conftest import openid


def kinds(engine, account_id) -> list[str]:
    with transaction(engine, read_only=True) as s:
        return [n.kind for n in s.exec(select(Notice).where(Notice.account_id == account_id)
                                       .order_by(Notice.id))]


def test_the_workers_cut_and_restore_reach_the_residents(world, stack, engine):
    stack.start_sim([[1]])
    number = stack.household(1, balance_fen=-500, relay_open=False)  # exhausted, power on
    house = account_by_number(engine, number)
    world.resident(house, openid=openid(7))
    world.resident(house, phone="13900000020")
    stack.start_worker()
    wait_until(lambda: POWER_CUT in kinds(engine, house.id), timeout=15,
               message="the worker did not cut")

    world.jobs.sweep()
    cut = [m for m in world.messages(house) if m.kind == POWER_CUT]
    assert sorted((m.channel, m.status) for m in cut) == [(SMS, SENT), (WECHAT_TEMPLATE, SENT)]
    assert any(f"户号{number}已于" in m["text"] and "欠费停电，充值" in m["text"]
               for m in world.sms())
    assert any(m["openid"] == openid(7) and m["template_id"] == "sandbox-tpl-cut"
               for m in world.wechat())

    meter_id = meter_of(engine, number).id
    with transaction(engine) as s:  # a manager restores it
        queue_restore(s, s.get(Meter, meter_id), "test")
    wait_until(lambda: POWER_RESTORED in kinds(engine, house.id), timeout=15,
               message="the worker did not restore")
    world.jobs.sweep()
    assert any(f"户号{number}已于" in m["text"] and "恢复供电" in m["text"]
               for m in world.sms())
    restored = [m for m in world.messages(house) if m.kind == POWER_RESTORED]
    assert [m.status for m in restored] == [SENT, SENT]


def test_serve_sends_a_confirmation_within_seconds(world, settings, engine, tmp_path):
    """`feikong serve` (its own process, the sandbox's stand-ins mounted in it) makes and sends
    the message of a notice written by someone else (here the test, as the order desk would),
    with nobody sweeping; /readyz sees the message jobs run and /metrics counts the SMS."""
    house = world.household(number="101030")
    world.resident(house, phone="13900000021")
    port = free_ports(1)
    env = dict(os.environ, FEIKONG_DATABASE_URL=settings.database_url,
               FEIKONG_VAR_DIR=str(settings.var_dir), FEIKONG_WEB_PORT=str(port),
               FEIKONG_PUBLIC_URL=f"http://127.0.0.1:{port}", FEIKONG_ORDER_JOBS_EVERY_S="0",
               FEIKONG_BILLING_JOBS_EVERY_S="0", FEIKONG_MESSAGE_JOBS_EVERY_S="0.5")
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "serving on" in log_path.read_text(), timeout=30,
                   message=lambda: f"serve did not start: {log_path.read_text()[-2000:]}")
        from app.db import utcnow

        written = time.monotonic()
        world.notice(house, PAYMENT_RECEIVED, utcnow(), amount_fen=3_000)
        [sms] = wait_until(lambda: sms_standin.outbox(settings.var_dir), timeout=10,
                           message=lambda: f"no SMS: {log_path.read_text()[-2000:]}")
        took = time.monotonic() - written
        assert sms["phone"] == "13900000021" and "户号101030充值30.00元已到账" in sms["text"]
        print(f"\nmessage_confirmation_s {took:.2f}")
        assert took < 5
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as web:
            ready = web.get("/readyz").json()["checks"]
            scrape = web.get("/metrics").text
        assert ready["message_jobs"]["ok"], ready
        assert 'feikong_messages_total{channel="sms",outcome="sent"} 1.0' in scrape
        assert 'feikong_message_attempts_total{channel="sms",result="ok"} 1.0' in scrape
        assert "feikong_message_queue_age_seconds 0.0" in scrape
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(15)
    assert code == 0, log_path.read_text()[-2000:]
