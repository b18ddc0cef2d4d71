"""`feikong review`: what waits for a manager, and the decisions on it, through the console
script's own entry point on the test's database. The things waiting are made by the real
paths: a meter that stops answering, a payment notified after its order was closed, a forged
notification."""

import pytest
from sqlmodel import select

from app.anomalies.models import METER_OFFLINE, Anomaly
from app.cli import main as feikong
from app.db import transaction
from app.estate.models import Meter
from app.orders.jobs import close_expired
from app.orders.models import PAID, PAID_AFTER_CLOSE
from app.orders.providers import ALIPAY_NOTIFY_PATH
from meters.store import record_poll_failure
from standins.alipay_sandbox import generate_rsa_keypair
from tests.app.test_orders_jobs import (later, order_of, pay, providers,  # noqa: F401
                                        set_behaviour, web)
from tests.conftest import wait_until
from tests.factories import account_by_number, balance_of


@pytest.fixture
def waiting(web, providers, engine, cut_account):
    """An offline meter, a payment after close, a forged notification: (late order no, meter id)."""
    account = account_by_number(engine, cut_account)
    with transaction(engine, read_only=True) as s:
        meter_id = s.exec(select(Meter.id).where(Meter.account_id == account.id)).one()
    for _ in range(3):
        record_poll_failure(engine, meter_id, "no response", 3)

    set_behaviour(web, mode="normal", late_s=None)
    late = pay(web, providers, "alipay", cut_account, notify="late")
    close_expired(engine, providers, now=later(31))
    web.post("/sandbox/notifications/release")
    wait_until(lambda: order_of(engine, late).status == PAID_AFTER_CLOSE)

    sandbox = providers.sandbox_alipay
    forged = sandbox.sign_form({"out_trade_no": "FKFORGED0001", "total_amount": "500.00",
                                "trade_status": "TRADE_SUCCESS", "trade_no": "2026X",
                                "app_id": sandbox.app_id},
                               private_pem=generate_rsa_keypair()[0])
    reply = web.post(ALIPAY_NOTIFY_PATH, content=sandbox.encode_form(forged),
                     headers={"content-type": "application/x-www-form-urlencoded"})
    assert reply.text == "failure"
    return late, meter_id


def open_anomalies(engine) -> list[Anomaly]:
    with transaction(engine, read_only=True) as s:
        return list(s.exec(select(Anomaly).where(Anomaly.resolved_at.is_(None))))


def test_review_lists_what_waits_for_a_manager(waiting, cut_account, capsys):
    late, meter_id = waiting
    assert feikong(["review"]) == 0
    out = capsys.readouterr().out
    anomalies, payments, refused = out.split("\n\n")
    assert anomalies.startswith("待处理异常 open anomalies: 1")
    assert METER_OFFLINE in anomalies and f"meter {meter_id}" in anomalies
    assert cut_account in anomalies
    assert payments.startswith("关单后付款 payments after close, to credit or refund: 1")
    assert late in payments and "50.00 元" in payments
    assert refused.splitlines()[0].endswith(": 1")  # the forged one; the late one is above
    assert "bad_signature" in refused and "FKFORGED0001" not in refused  # unverified: no order
    assert "张三" not in out and "13812345678" not in out  # the holder's name and phone


def test_a_manager_resolves_an_anomaly_once(waiting, engine, capsys):
    (anomaly,) = open_anomalies(engine)
    assert feikong(["review", "resolve", str(anomaly.id), "--by", "王经理",
                    "--note", "电表通讯模块已更换"]) == 0
    assert "resolved: 王经理: 电表通讯模块已更换" in capsys.readouterr().out
    assert open_anomalies(engine) == []
    assert feikong(["review", "resolve", str(anomaly.id), "--by", "李经理",
                    "--note", "again"]) == 1
    assert "resolved already" in capsys.readouterr().err
    with transaction(engine, read_only=True) as s:
        assert s.get(Anomaly, anomaly.id).resolution == "王经理: 电表通讯模块已更换"
    assert feikong(["review", "resolve", "999999", "--by", "王经理", "--note", "x"]) == 1
    assert "no anomaly 999999" in capsys.readouterr().err
    assert feikong(["review"]) == 0
    assert capsys.readouterr().out.startswith("待处理异常 open anomalies: 0")


def test_a_manager_credits_a_late_payment_from_the_review(waiting, engine, cut_account, capsys):
    late, _ = waiting
    assert balance_of(engine, cut_account) == -500
    assert feikong(["review", "credit-late", late, "--by", "王经理"]) == 0
    assert f"{late}: 50.00 元 credited" in capsys.readouterr().out
    assert balance_of(engine, cut_account) == 4500
    assert order_of(engine, late).status == PAID
    assert feikong(["review", "credit-late", late, "--by", "王经理"]) == 1  # once only
    assert "not a payment waiting for a manager" in capsys.readouterr().err
    assert balance_of(engine, cut_account) == 4500

