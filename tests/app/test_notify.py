"""Alipay notifications through the real app: signed by the sandbox, verified by the SDK."""

import pytest
from sqlmodel import select

from app.commands.models import RESTORE, Command
from app.db import transaction
from app.orders.models import PAID, Order, RefusedNotification
from payments.sandbox import generate_rsa_keypair
from tests.factories import balance_of, entries_of
from tests.payflow import NOTIFY, post_notification, start_payment


@pytest.fixture
def sandbox(client):
    return client.app.state.providers.sandbox_alipay


def test_valid_notification_credits_once_and_queues_restore(client, sandbox, engine, cut_account):
    pay = start_payment(client, sandbox, cut_account)
    form = sandbox.build_notification(pay)
    assert post_notification(client, sandbox, form).text == "success"
    assert post_notification(client, sandbox, form).text == "success"  # the duplicate is acknowledged
    assert balance_of(engine, cut_account) == 4500
    assert [e.amount_fen for e in entries_of(engine, cut_account, "topup")] == [5000]
    with transaction(engine) as s:
        assert s.exec(select(Order).where(Order.out_trade_no == pay.out_trade_no)).one().status == PAID
        restores = s.exec(select(Command).where(Command.action == RESTORE)).all()
    assert len(restores) == 1


def _forged(sandbox, pay):
    other_private, _ = generate_rsa_keypair()
    return sandbox.sign_form(sandbox.build_notification(pay), private_pem=other_private)


@pytest.mark.parametrize("case, reason", [
    ("forged_signature", "bad_signature"),
    ("wrong_app_id", "wrong_app_id"),
    ("unknown_order", "unknown_order"),
    ("different_amount", "amount_mismatch"),
    ("altered_after_signing", "bad_signature"),
])
def test_bad_notification_is_refused_recorded_and_changes_nothing(client, sandbox, engine, cut_account, case, reason):
    pay = start_payment(client, sandbox, cut_account)
    if case == "forged_signature":
        form = _forged(sandbox, pay)
    elif case == "wrong_app_id":
        form = sandbox.build_notification(pay, app_id="2021999999999999")
    elif case == "unknown_order":
        form = sandbox.build_notification(pay.__class__(**{**pay.__dict__, "out_trade_no": "FKNOSUCHORDER"}))
    elif case == "different_amount":
        form = sandbox.build_notification(pay, amount_fen=1)
    else:
        form = sandbox.build_notification(pay) | {"buyer_logon_id": "139****0000"}
    reply = post_notification(client, sandbox, form)
    assert (reply.status_code, reply.text) == (200, "failure")
    assert balance_of(engine, cut_account) == -500
    with transaction(engine) as s:
        refused = s.exec(select(RefusedNotification)).all()
        assert s.exec(select(Order)).one().status == "pending"
        assert s.exec(select(Command)).all() == []
    assert [r.reason for r in refused] == [reason]


def test_malformed_body_is_refused(client, sandbox, engine, cut_account):
    reply = client.post(NOTIFY, content=b"\xff\xfe not a form",
                        headers={"content-type": "application/x-www-form-urlencoded"})
    assert reply.text == "failure"
    assert balance_of(engine, cut_account) == -500


def test_trade_closed_notice_credits_nothing(client, sandbox, engine, cut_account):
    pay = start_payment(client, sandbox, cut_account)
    reply = post_notification(client, sandbox, sandbox.build_notification(pay, trade_status="TRADE_CLOSED"))
    assert reply.text == "success"
    assert balance_of(engine, cut_account) == -500


def test_refund_notice_after_payment_credits_nothing_more(client, sandbox, engine, cut_account):
    pay = start_payment(client, sandbox, cut_account)
    post_notification(client, sandbox, sandbox.build_notification(pay, trade_no="2026T1"))
    refund = sandbox.build_notification(pay, trade_no="2026T1",
                                        extra={"refund_fee": "10.00", "gmt_refund": "2026-11-22 10:00:00"})
    assert post_notification(client, sandbox, refund).text == "success"
    assert balance_of(engine, cut_account) == 4500
