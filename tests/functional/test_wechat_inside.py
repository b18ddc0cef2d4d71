"""A resident whose power was cut pays with WeChat Pay inside WeChat's own browser: the official
account's OAuth (the stand-in, snsapi_base: no screen), the JSAPI page, the sandbox
WeixinJSBridge's pay sheet, and back on the account page with the power on."""

import re

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.factories import balance_of, entries_of
from tests.functional.conftest import ARGS, ARTIFACTS, CHROMIUM, tap_wechat_pay
from tests.functional.test_worker import read_relay
from tests.identity.support import sign_in_page

WECHAT_UA = ("Mozilla/5.0 (Linux; Android 13; V2148A Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
             "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 "
             "MMWEBSDK/20231202 MMWEBID/2247 MicroMessenger/8.0.47.2560(0x28002F35) WeChat/arm64 "
             "Weixin NetType/WIFI Language/zh_CN ABI/arm64")


@pytest.fixture
def phone_in_wechat():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True,
                                      has_touch=True, locale="zh-CN", user_agent=WECHAT_UA)
        yield context.new_page()
        browser.close()


def open_pay_sheet(page, base_url: str, number: str):
    """Account page → 50 元 → 微信支付 → OAuth → JSAPI page → the sandbox bridge's sheet."""
    tap_wechat_pay(page, base_url, number)
    expect(page).to_have_url(re.compile(r"/wechat/pay/\w+(#wechat_redirect)?$"))  # OAuth done, the JSAPI page
    expect(page.locator("#pay-amount")).to_have_text("50.00")
    sheet = page.frame_locator("#sandbox-wechat-sheet")
    expect(sheet.locator("#pay-amount")).to_contain_text("50.00")
    return sheet


def test_cut_household_pays_inside_wechat_and_sees_power_back(stack, engine, cut_household,
                                                              phone_in_wechat):
    page = phone_in_wechat
    sign_in_page(page, stack, cut_household)  # the household's resident: supply shown
    sheet = open_pay_sheet(page, stack.base_url, cut_household)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "wechat-inside-pay-sheet.png"))
    sheet.get_by_role("button", name="确认付款").click()
    sheet.get_by_role("button", name="完成").click()

    expect(page).to_have_url(re.compile(rf"/a/{cut_household}\?order=\w+"))
    expect(page.locator("#order-state")).to_have_text("已到账 50.00 元", timeout=10_000)
    expect(page.locator("#balance")).to_have_text("45.00", timeout=10_000)
    expect(page.locator("#power")).to_have_text("供电中", timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "paid-inside-wechat-power-back.png"), full_page=True)

    assert [e.amount_fen for e in entries_of(engine, cut_household, "topup")] == [5000]
    assert balance_of(engine, cut_household) == 4500
    assert read_relay(stack, 0, 7) is False  # relay register reads 0: supply on


def test_cancel_in_the_wechat_pay_sheet_credits_nothing(stack, engine, cut_household,
                                                         phone_in_wechat):
    page = phone_in_wechat
    sign_in_page(page, stack, cut_household)  # the household's resident: supply shown
    sheet = open_pay_sheet(page, stack.base_url, cut_household)
    sheet.get_by_role("button", name="取消").click()

    expect(page).to_have_url(re.compile(rf"/a/{cut_household}\?order=\w+"))
    # the provider is asked on the way back: not paid, and the page says so (not "confirming")
    expect(page.locator("#order-state")).to_contain_text("未完成支付（已取消或尚未付款）")
    expect(page.locator("#pay-again")).to_be_visible()
    expect(page.locator("#balance")).to_have_text("-5.00")
    assert entries_of(engine, cut_household, "topup") == []
    assert read_relay(stack, 0, 7) is True  # still cut
