"""The bound resident's home: what a cut household must pay, shown and preset; the low-balance
warning that goes as soon as a top-up lifts the balance; amounts a phone keyboard can type."""

import re
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.factories import EstateFactory, balance_of
from tests.identity.support import bound_resident, post
from tests.payflow import post_notification, start_payment


@pytest.fixture
def estate(engine):
    return EstateFactory(engine)


@pytest.fixture
def gateway(estate):
    return estate.gateway("127.0.0.1", 1)


def _checked_preset(page: str) -> str:
    return re.search(r'name="amount" value="(\d+)" checked', page).group(1)


def test_a_cut_household_is_told_what_brings_the_power_back(client, engine, settings, estate,
                                                           gateway):
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=-1234, relay_open=True)
    bound_resident(engine, client, settings, number)
    page = client.get(f"/a/{number}").text
    assert "因余额不足已停电" in page
    assert "充值 12.35 元即可恢复供电" in page  # threshold 0 − (−12.34) + 0.01
    assert "至少充值 12.35 元才能恢复供电" in page
    assert _checked_preset(page) == "13"  # the amount needed, in whole yuan, chosen
    assert "不能复电" not in page  # 13, 20, 50, 100, 200 all restore
    assert "A top-up of ¥12.35 brings the power back" in client.get(f"/a/{number}?lang=en").text


def test_presets_too_small_to_restore_are_marked(client, engine, settings, estate, gateway):
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=-3000, relay_open=True,
                            restore_threshold_fen=500)
    bound_resident(engine, client, settings, number)
    page = client.get(f"/a/{number}").text
    assert "充值 35.01 元即可恢复供电" in page
    assert _checked_preset(page) == "36"
    marked = re.findall(r'value="(\d+)" ?><span>\d+ 元<small class="short-note">不能复电', page)
    assert marked == ["20"]  # 20 < 35.01; 36, 50, 100 restore


def test_the_low_balance_warning_goes_once_a_top_up_lifts_the_balance(client, engine, settings,
                                                                     estate, gateway):
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=500)  # below 10.00
    bound_resident(engine, client, settings, number)
    assert 'id="low-balance"' in client.get(f"/a/{number}").text
    sandbox = client.app.state.providers.sandbox_alipay
    pay = start_payment(client, sandbox, number, "20")
    assert post_notification(client, sandbox, sandbox.build_notification(pay)).text == "success"
    assert balance_of(engine, number) == 2500
    page = client.get(f"/a/{number}").text
    assert 'id="low-balance"' not in page and "25.00" in page


@pytest.mark.parametrize("typed", ["1e2", "١٠٠", "-5", "1_000"])
def test_amounts_that_are_not_plain_digits_are_refused(client, engine, settings, estate, gateway,
                                                       typed):
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=500)
    reply = post(client, f"/a/{number}/topup", {"custom": typed, "channel": "alipay"})
    assert reply.status_code == 400
    assert "金额格式不对" in reply.text


def test_full_width_digits_are_an_amount(client, engine, settings, estate, gateway):
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=500)
    reply = post(client, f"/a/{number}/topup", {"custom": "１００", "channel": "alipay"})
    assert reply.status_code == 303  # to the cashier, for 100.00 元
    query = dict(parse_qsl(urlsplit(reply.headers["location"]).query, keep_blank_values=True))
    pay = client.app.state.providers.sandbox_alipay.parse_pay_request(query)
    assert pay.amount_fen == 10000


def test_a_full_width_number_with_spaces_finds_the_household(client, estate, gateway):
    estate.account(gateway_id=gateway, unit_id=1, number="101020")
    reply = client.get("/", params={"number": " １０１ ０２０ "})
    assert reply.status_code == 303 and reply.headers["location"].endswith("/a/101020")


def test_a_resident_turns_reminders_off_and_on_for_their_household_only(client, engine, settings,
                                                                         estate, gateway):
    from app.db import transaction
    from app.resident.models import ResidentAccount

    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=500)
    stranger = estate.account(gateway_id=gateway, unit_id=2, balance_fen=500)
    rid = bound_resident(engine, client, settings, number)

    def wanted() -> bool:
        with transaction(engine, read_only=True) as s:
            return [b.reminders for b in s.query(ResidentAccount)
                    .filter(ResidentAccount.resident_id == rid)] == [True]

    assert "余额提醒已开启" in client.get(f"/a/{number}").text
    assert post(client, f"/a/{number}/reminders", {"on": "0"}).status_code == 303
    assert not wanted()
    page = client.get(f"/a/{number}").text
    assert "余额提醒已关闭。停电、复电和充值到账的通知仍会发送。" in page
    assert post(client, f"/a/{stranger}/reminders", {"on": "0"}).status_code == 404
    assert client.post(f"/a/{number}/reminders", data={"on": "1"}).status_code == 403  # no token
    assert not wanted()
    assert post(client, f"/a/{number}/reminders", {"on": "1"}).status_code == 303
    assert wanted()
