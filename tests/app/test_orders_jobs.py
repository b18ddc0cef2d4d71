"""The order jobs against the live app and its sandbox: a notification that never comes is
recovered by query, an expired order is closed at the provider, and a payment notified after
that is kept for a manager instead of credited. Both providers, real signatures, the SDKs' own
checks of the stand-ins' replies."""

import datetime as dt
import json
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import select

from app.commands.models import RESTORE, Command
from app.db import transaction, utcnow
from app.orders.jobs import (CLOSED_NOW, NOT_PAID, close_expired, query_pending,
                             run_order_jobs)
from app.orders.models import (CLOSED, PAID, PAID_AFTER_CLOSE, PENDING, Order,
                               RefusedNotification)
from app.orders.services import CREDITED, credit_late_payment
from tests.conftest import wait_until
from tests.factories import balance_of, entries_of
from tests.identity.support import post

CHANNELS = ["alipay", "wechat"]


# -- shared with test_refund.py and test_reconcile.py ------------------------------------------

@pytest.fixture
def web(stack):
    """The real app served by uvicorn (no worker): the providers' calls reach its stand-ins."""
    stack.start_web()
    with httpx.Client(base_url=stack.base_url, follow_redirects=False, timeout=10) as c:
        yield c


@pytest.fixture
def providers(stack, web):
    return stack.app.state.providers


def pay(web, providers, channel: str, number: str, yuan: str = "50",
        notify: str = "normal") -> str:
    """Top up through the account page and pay in the sandbox cashier, the notification sent as
    `notify` says (normal, repeat, late, never); return the out_trade_no."""
    reply = post(web, f"/a/{number}/topup", {"amount": yuan, "channel": channel})
    assert reply.status_code == 303, reply.text
    cashier = reply.headers["location"]
    if channel == "alipay":
        assert web.get(cashier).status_code == 200  # the trade exists at Alipay from now on
        query = urlsplit(cashier).query
        out_trade_no = json.loads(dict(parse_qsl(query))["biz_content"])["out_trade_no"]
        paid = web.post("/sandbox/alipay/pay", data={"query": query, "notify": notify})
    else:
        params = parse_qs(urlsplit(cashier).query)
        prepay_id = params["prepay_id"][0]
        out_trade_no = providers.wechat_standin.order_by_prepay_id(prepay_id).out_trade_no
        paid = web.post("/sandbox/wechat/pay", data={
            "prepay_id": prepay_id, "redirect_url": params["redirect_url"][0], "notify": notify})
    assert paid.status_code == 303, paid.text
    return out_trade_no


def order_of(engine, out_trade_no: str) -> Order:
    with transaction(engine, read_only=True) as s:
        return s.exec(select(Order).where(Order.out_trade_no == out_trade_no)).one()


def refused(engine) -> list[RefusedNotification]:
    with transaction(engine, read_only=True) as s:
        return list(s.exec(select(RefusedNotification).order_by(RefusedNotification.id)))


def later(minutes: float) -> dt.datetime:
    return utcnow() + dt.timedelta(minutes=minutes)


def set_behaviour(web, **values):
    reply = web.post("/sandbox/notify-behaviour", json=values)
    assert reply.status_code == 200, reply.text
    return reply.json()


# -- lost notifications -------------------------------------------------------------------------

@pytest.mark.parametrize("channel", CHANNELS)
def test_a_notification_never_sent_is_recovered_by_query(web, providers, engine, cut_account,
                                                         channel):
    no = pay(web, providers, channel, cut_account, notify="never")
    assert order_of(engine, no).status == PENDING and balance_of(engine, cut_account) == -500

    assert query_pending(engine, providers, now=later(1)) == {}  # too early to ask
    assert query_pending(engine, providers, now=later(3)) == {CREDITED: 1}
    assert query_pending(engine, providers, now=later(10)) == {}  # paid: never asked again

    assert order_of(engine, no).status == PAID
    assert [e.amount_fen for e in entries_of(engine, cut_account, "topup")] == [5000]
    assert balance_of(engine, cut_account) == 4500
    with transaction(engine, read_only=True) as s:
        assert len(s.exec(select(Command).where(Command.action == RESTORE)).all()) == 1


@pytest.mark.parametrize("channel", CHANNELS)
def test_an_unpaid_order_is_asked_again_later_then_closed_at_the_provider(
        web, providers, engine, cut_account, channel):
    post(web, f"/a/{cut_account}/topup", {"amount": "50", "channel": channel})
    no = _only_order(engine).out_trade_no

    assert query_pending(engine, providers, now=later(3)) == {NOT_PAID: 1}
    assert query_pending(engine, providers, now=later(4)) == {}  # within its back-off
    assert close_expired(engine, providers, now=later(31)) == {CLOSED_NOW: 1}

    assert order_of(engine, no).status == CLOSED
    provider = providers.by_channel(channel)
    held = provider.query(no)
    assert held is None or held.raw["trade_state" if channel == "wechat" else "trade_status"] in (
        "CLOSED", "TRADE_CLOSED")  # Alipay never saw a cashier that was never opened
    assert balance_of(engine, cut_account) == -500


@pytest.mark.parametrize("channel", CHANNELS)
def test_an_expired_order_paid_at_the_provider_is_credited_not_closed(web, providers, engine,
                                                                      cut_account, channel):
    no = pay(web, providers, channel, cut_account, notify="never")
    assert close_expired(engine, providers, now=later(31)) == {CREDITED: 1}
    assert order_of(engine, no).status == PAID and balance_of(engine, cut_account) == 4500


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_late_notification_after_the_order_was_closed_is_kept_for_a_manager(
        web, providers, engine, cut_account, channel):
    set_behaviour(web, mode="normal", late_s=None)  # "late" holds until released
    no = pay(web, providers, channel, cut_account, notify="late")  # in flight: unseen by queries
    assert close_expired(engine, providers, now=later(31)) == {CLOSED_NOW: 1}
    assert order_of(engine, no).status == CLOSED

    assert web.post("/sandbox/notifications/release").json() == {"released": 1}

    wait_until(lambda: order_of(engine, no).status == PAID_AFTER_CLOSE,
               message="the late notification did not arrive")
    assert balance_of(engine, cut_account) == -500
    assert entries_of(engine, cut_account, "topup") == []
    assert [(r.reason, r.out_trade_no) for r in refused(engine)] == [("paid_after_close", no)]


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_manager_credits_a_late_payment_once(web, providers, engine, cut_account, channel):
    set_behaviour(web, mode="normal", late_s=None)
    no = pay(web, providers, channel, cut_account, notify="late")
    close_expired(engine, providers, now=later(31))
    web.post("/sandbox/notifications/release")
    wait_until(lambda: order_of(engine, no).status == PAID_AFTER_CLOSE)

    with transaction(engine) as s:
        credit_late_payment(s, no, by="王经理")
    with pytest.raises(ValueError), transaction(engine) as s:
        credit_late_payment(s, no, by="王经理")

    assert order_of(engine, no).status == PAID
    assert [e.amount_fen for e in entries_of(engine, cut_account, "topup")] == [5000]


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_repeated_notification_credits_once(web, providers, engine, cut_account, channel):
    set_behaviour(web, mode="normal", repeat=4)
    no = pay(web, providers, channel, cut_account, notify="repeat")
    assert order_of(engine, no).status == PAID
    assert [e.amount_fen for e in entries_of(engine, cut_account, "topup")] == [5000]
    assert refused(engine) == []


@pytest.mark.parametrize("channel", CHANNELS)
def test_the_order_jobs_loop_recovers_a_lost_notification(web, providers, stack, settings,
                                                          engine, cut_account, channel):
    no = pay(web, providers, channel, cut_account, notify="never")
    with transaction(engine) as s:  # the resident paid three minutes ago
        s.execute(update(Order).where(Order.out_trade_no == no)
                  .values(created_at=utcnow() - dt.timedelta(minutes=3)))

    jobs = stack.lt.spawn(run_order_jobs(engine, settings, providers, every_s=0.2))
    try:
        wait_until(lambda: order_of(engine, no).status == PAID, timeout=15,
                   message="the loop did not query the order")
    finally:
        jobs.cancel()
    assert balance_of(engine, cut_account) == 4500


def test_the_notify_behaviour_switch_refuses_an_unknown_mode(web):
    assert web.post("/sandbox/notify-behaviour", json={"mode": "sometimes"}).status_code == 400
    assert web.get("/sandbox/notify-behaviour").json()["mode"] == "normal"


def _only_order(engine) -> Order:
    with transaction(engine, read_only=True) as s:
        return s.exec(select(Order)).one()


# -- the order's life, told to the provider -----------------------------------------------------

@pytest.mark.parametrize("channel", CHANNELS)
def test_the_provider_refuses_a_payment_after_the_orders_life(web, providers, engine,
                                                              cut_account, channel):
    """The order's expiry goes to the provider (Alipay `time_expire` in Beijing time, WeChat
    `time_expire` in RFC 3339): 31 minutes later its cashier refuses the payment, nothing is
    credited and the order stays pending (the order jobs close it)."""
    import time

    reply = post(web, f"/a/{cut_account}/topup", {"amount": "50", "channel": channel})
    assert reply.status_code == 303, reply.text
    cashier = reply.headers["location"]
    later = time.time() + 31 * 60
    if channel == "alipay":
        query = urlsplit(cashier).query
        biz = json.loads(dict(parse_qsl(query))["biz_content"])
        no = biz["out_trade_no"]
        created = order_of(engine, no).created_at
        assert biz["time_expire"] == (created + dt.timedelta(minutes=30)).astimezone(
            dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")
        assert web.get(cashier).status_code == 200
        providers.alipay_standin.clock = lambda: later
        paid = web.post("/sandbox/alipay/pay", data={"query": query})
        assert paid.status_code == 400 and "交易已经关闭" in paid.text
    else:
        params = parse_qs(urlsplit(cashier).query)
        order = providers.wechat_standin.order_by_prepay_id(params["prepay_id"][0])
        no = order.out_trade_no
        created = order_of(engine, no).created_at
        assert order.time_expire == created.replace(microsecond=0) + dt.timedelta(minutes=30)
        providers.wechat_standin.sandbox.clock = lambda: later
        paid = web.post("/sandbox/wechat/pay", data={
            "prepay_id": params["prepay_id"][0], "redirect_url": params["redirect_url"][0]})
        assert paid.status_code == 400 and "ORDER_CLOSED" in paid.text
    assert order_of(engine, no).status == PENDING
    assert entries_of(engine, cut_account, "topup") == []
