"""Alipay notifications through the real app: signed by the sandbox, verified by the SDK."""

import pytest
from sqlmodel import select

from app.commands.models import RESTORE, Command
from app.db import transaction
from app.orders.models import PAID, Order, RefusedNotification
from standins.alipay_sandbox import generate_rsa_keypair
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


def test_a_flood_of_refusals_is_counted_and_only_sampled(engine):
    """Every refused notification is counted; only the first REFUSED_SAMPLE of each channel,
    reason and hour are kept whole, so a flood cannot fill the disk; the review shows groups."""
    import datetime as dt

    from app.anomalies.review import format_review, review
    from app.orders.models import REFUSED_SAMPLE, RefusedCount
    from app.orders.services import record_refused

    start = dt.datetime(2026, 12, 3, 9, 59, 30, tzinfo=dt.timezone.utc)
    with transaction(engine) as s:
        for i in range(REFUSED_SAMPLE + 15):
            record_refused(s, channel="alipay", reason="bad_signature", detail=f"forgery {i}",
                           now=start)
        for i in range(3):  # the next hour: counted and kept afresh
            record_refused(s, channel="alipay", reason="bad_signature", detail=f"later {i}",
                           now=start + dt.timedelta(minutes=1))
        record_refused(s, channel="wechat", reason="wrong_app_id", detail="x", now=start)
    with transaction(engine, read_only=True) as s:
        assert len(s.exec(select(RefusedNotification)).all()) == REFUSED_SAMPLE + 3 + 1
        counts = {(c.channel, c.reason, c.hour.hour): c.count
                  for c in s.exec(select(RefusedCount))}
        assert counts == {("alipay", "bad_signature", 9): REFUSED_SAMPLE + 15,
                          ("alipay", "bad_signature", 10): 3, ("wechat", "wrong_app_id", 9): 1}
        text = format_review(review(s, now=start + dt.timedelta(hours=1)))
    refused = text.split("拒收的通知")[1]
    assert refused.splitlines()[0].endswith(f": {REFUSED_SAMPLE + 15 + 3 + 1}")
    assert f"{REFUSED_SAMPLE + 18} ×  alipay  bad_signature" in refused
    assert "later 2" in refused  # the newest kept sample of the group
