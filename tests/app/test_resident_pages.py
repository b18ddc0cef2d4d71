"""The resident's pages as a browser gets them from the real app."""

import pytest
from sqlmodel import select

from app.db import transaction
from app.orders.models import Order
from tests.factories import EstateFactory
from tests.identity.support import bound_resident, post


@pytest.fixture
def estate(engine):
    return EstateFactory(engine)


@pytest.fixture
def gateway(estate):
    return estate.gateway("127.0.0.1", 1)


def orders(engine):
    with transaction(engine) as s:
        return s.exec(select(Order)).all()


def test_account_page_shows_balance_power_and_masked_name(client, engine, settings, estate,
                                                          gateway):
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=12345, holder_name="张三丰")
    bound_resident(engine, client, settings, number)
    page = client.get(f"/a/{number}").text
    assert "123.45" in page
    assert "供电中" in page
    assert "张**" in page and "张三丰" not in page


def test_cut_account_shows_negative_balance_and_cut(client, engine, settings, estate, gateway):
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=-500, relay_open=True)
    bound_resident(engine, client, settings, number)
    page = client.get(f"/a/{number}").text
    assert "-5.00" in page and "已停电" in page


def test_english_is_available_and_remembered(client, engine, settings, estate, gateway):
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=100, relay_open=True)
    bound_resident(engine, client, settings, number)
    page = client.get(f"/a/{number}?lang=en").text
    assert "Power cut" in page and "Balance" in page
    assert "Power cut" in client.get(f"/a/{number}").text  # the cookie keeps English
    assert "已停电" in client.get(f"/a/{number}?lang=zh").text


def test_home_finds_an_account_by_number(client, estate, gateway):
    number = estate.account(gateway_id=gateway, unit_id=1)
    reply = client.get(f"/?number={number}")
    assert reply.status_code == 303 and reply.headers["location"].endswith(f"/a/{number}")


def test_unknown_account_is_a_clear_404(client):
    reply = client.get("/a/000000")
    assert reply.status_code == 404
    assert "未找到该户号" in reply.text


def test_malformed_account_number_is_refused(client):
    reply = client.get("/?number=<script>")
    assert reply.status_code == 400 and "户号格式不对" in reply.text


@pytest.mark.parametrize("form, message", [
    ({"amount": "", "custom": ""}, "请选择或输入充值金额"),
    ({"custom": "12.345"}, "金额格式不对"),
    ({"custom": "abc"}, "金额格式不对"),
    ({"custom": "-20"}, "金额格式不对"),
    ({"custom": "0.50"}, "充值金额须在"),
    ({"custom": "99999"}, "充值金额须在"),
    ({"amount": "50", "channel": "bitcoin"}, "不支持的支付方式"),
])
def test_malformed_topup_is_refused_and_creates_no_order(client, engine, estate, gateway, form, message):
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=100)
    reply = post(client, f"/a/{number}/topup", form)
    assert reply.status_code == 400 and message in reply.text
    assert orders(engine) == []


def test_topup_for_unknown_account_creates_no_order(client, engine):
    reply = post(client, "/a/424242/topup", {"amount": "50"})
    assert reply.status_code == 404
    assert orders(engine) == []


def test_custom_amount_goes_to_the_cashier(client, engine, estate, gateway):
    number = estate.account(gateway_id=gateway, unit_id=1)
    reply = post(client, f"/a/{number}/topup", {"amount": "50", "custom": "35.50"})
    assert reply.status_code == 303 and "/sandbox/alipay/gateway.do?" in reply.headers["location"]
    assert [o.amount_fen for o in orders(engine)] == [3550]
    cashier = client.get(reply.headers["location"])
    assert cashier.status_code == 200 and "35.50" in cashier.text


def test_page_shows_recent_notices_and_days_left(client, engine, settings, estate, gateway):
    import datetime as dt

    from app.db import transaction, utcnow
    from app.estate.models import Account
    from app.notices.models import LOW_BALANCE, Notice

    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=1000)
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == number)).one()
        account.daily_rate_fen, account.daily_rate_on = 200, utcnow().date()
        s.add(account)
        s.add(Notice(account_id=account.id, kind=LOW_BALANCE, amount_fen=1000))
        s.add(Notice(account_id=account.id, kind=LOW_BALANCE, amount_fen=5,
                     created_at=utcnow() - dt.timedelta(days=30)))  # too old to show
    bound_resident(engine, client, settings, number)
    page = client.get(f"/a/{number}").text
    assert "余额不足：仅剩 10.00 元，请及时充值" in page
    assert "仅剩 0.05 元" not in page
    assert "约可用 5 天" in page
    assert "Low balance: ¥10.00 left" in client.get(f"/a/{number}?lang=en").text


def test_inside_wechat_alipay_is_explained_not_offered(client, estate, gateway):
    """WeChat's browser blocks Alipay's pages: the button would lead nowhere."""
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=100)
    wechat = {"user-agent": "Mozilla/5.0 (Linux; Android 13) MicroMessenger/8.0.47"}
    page = client.get(f"/a/{number}", headers=wechat).text
    assert "在浏览器打开」，再用支付宝支付" in page and 'value="alipay"' not in page
    assert 'value="alipay"' in client.get(f"/a/{number}").text


def test_a_page_waiting_for_a_payment_asks_less_often_then_stops(client, engine, estate,
                                                                 gateway):
    """Fresh: every 500 ms; a minute old: every 5 s; ten minutes old: the page says no payment
    came (nothing to do if the resident did not pay) and stops asking."""
    import datetime as dt

    from sqlalchemy import update

    from app.db import utcnow

    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=100)
    assert post(client, f"/a/{number}/topup", {"amount": "20", "channel": "alipay"}
                ).status_code == 303
    [order] = orders(engine)

    def page_aged(minutes):
        with transaction(engine) as s:
            s.execute(update(Order).where(Order.id == order.id)
                      .values(created_at=utcnow() - dt.timedelta(minutes=minutes)))
        return client.get(f"/a/{number}?order={order.out_trade_no}").text

    fresh = page_aged(0)
    assert 'hx-trigger="every 500ms"' in fresh and "支付确认中" in fresh
    assert 'hx-trigger="every 5s"' in page_aged(3)
    overdue = page_aged(11)
    assert "hx-trigger" not in overdue and "这笔充值没有收到付款" in overdue
    assert "支付确认中" not in overdue
