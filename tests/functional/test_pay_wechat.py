"""A resident whose power was cut pays with WeChat Pay (H5, in a phone browser) in the sandbox
and sees the power come back."""

import concurrent.futures
import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import wait_until
from tests.factories import balance_of, entries_of
from tests.functional.conftest import ARTIFACTS, tap_wechat_pay
from tests.functional.test_worker import commands, read_relay
from tests.payflow import WECHAT_NOTIFY, start_wechat_payment
from tests.identity.support import sign_in_page


def test_cut_household_pays_50_with_wechat_and_sees_power_back(stack, engine, cut_household,
                                                                phone):
    page = phone
    sign_in_page(page, stack, cut_household)  # the household's resident: supply shown
    tap_wechat_pay(page, stack.base_url, cut_household)
    expect(page).to_have_url(re.compile(r"/sandbox/wechat/h5\?prepay_id="))  # the sandbox cashier
    expect(page.locator("#pay-amount")).to_contain_text("50.00")
    page.get_by_role("button", name="确认付款").click()

    expect(page.locator("#balance")).to_have_text("45.00", timeout=10_000)
    expect(page.locator("#power")).to_have_text("供电中", timeout=10_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "paid-wechat-power-back.png"), full_page=True)

    assert [e.amount_fen for e in entries_of(engine, cut_household, "topup")] == [5000]
    assert balance_of(engine, cut_household) == 4500
    assert read_relay(stack, 0, 7) is False  # relay register reads 0: supply on


def test_same_wechat_notification_ten_times_at_once_credits_once(stack, engine, cut_household):
    standin = stack.app.state.providers.wechat_standin
    with httpx.Client(base_url=stack.base_url, follow_redirects=False) as client:
        order = start_wechat_payment(client, standin, cut_household)
    standin.pay(order.out_trade_no)
    headers, body = standin.notification_for(order.out_trade_no)

    def send(_):
        with httpx.Client(base_url=stack.base_url) as c:
            return c.post(WECHAT_NOTIFY, content=body, headers=headers).status_code

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(send, range(10)))
    assert replies == [200] * 10
    assert [e.amount_fen for e in entries_of(engine, cut_household, "topup")] == [5000]
    assert balance_of(engine, cut_household) == 4500
    wait_until(lambda: [c.state for c in commands(engine)] == ["done"], message="restore not done")
    assert read_relay(stack, 0, 7) is False
