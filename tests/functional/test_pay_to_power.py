"""A resident whose power was cut pays in a phone browser and sees the power come back."""

import concurrent.futures

import httpx
import pytest
from playwright.sync_api import expect

from meters.protocol import PROTOCOLS
from tests.conftest import wait_until
from tests.factories import balance_of, entries_of
from tests.functional.conftest import ARTIFACTS
from tests.functional.test_worker import commands, read_relay
from tests.payflow import post_notification, start_payment
from tests.identity.support import sign_in_page


# Payment to power, whatever the household's meter speaks (issue 18).
pytestmark = pytest.mark.parametrize("meter_protocol", PROTOCOLS)

def test_cut_household_pays_50_and_sees_power_back(stack, engine, cut_household, phone):
    page = phone
    sign_in_page(page, stack, cut_household)  # the household's resident: supply shown
    page.goto(f"{stack.base_url}/a/{cut_household}")
    expect(page.locator("#balance")).to_have_text("-5.00")
    expect(page.locator("#power")).to_have_text("已停电")

    page.get_by_text("50 元", exact=True).click()
    page.get_by_role("button", name="支付宝支付").click()
    expect(page.locator("#pay-amount")).to_contain_text("50.00")  # the sandbox cashier
    page.get_by_role("button", name="确认付款").click()

    expect(page.locator("#balance")).to_have_text("45.00", timeout=10_000)
    expect(page.locator("#power")).to_have_text("供电中", timeout=10_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "paid-power-back.png"), full_page=True)

    assert [e.amount_fen for e in entries_of(engine, cut_household, "topup")] == [5000]
    assert balance_of(engine, cut_household) == 4500
    assert read_relay(stack, 0, 7) is False  # relay register reads 0: supply on


def test_same_notification_ten_times_at_once_credits_once(stack, engine, cut_household):
    sandbox = stack.app.state.providers.sandbox_alipay
    with httpx.Client(base_url=stack.base_url, follow_redirects=False) as client:
        form = sandbox.build_notification(start_payment(client, sandbox, cut_household))
    body = sandbox.encode_form(form)

    def send(_):
        with httpx.Client(base_url=stack.base_url) as c:
            return c.post("/notify/alipay", content=body,
                          headers={"content-type": "application/x-www-form-urlencoded"}).text

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(send, range(10)))
    assert replies == ["success"] * 10
    assert [e.amount_fen for e in entries_of(engine, cut_household, "topup")] == [5000]
    assert balance_of(engine, cut_household) == 4500
    wait_until(lambda: [c.state for c in commands(engine)] == ["done"], message="restore not done")
    assert read_relay(stack, 0, 7) is False
