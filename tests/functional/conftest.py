"""Fixtures of the journeys: a cut household on a live system, and a phone-sized browser."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def cut_household(stack, engine):
    """One gateway, one meter whose relay is open, an account at -5.00 元; web and worker up."""
    stack.start_sim([[7]], relay_delay_s=0.2)
    number = stack.household(7, balance_fen=-500, relay_open=True)
    stack.start_web()
    stack.start_worker()
    return number


@pytest.fixture
def phone():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is missing: run `make test`, which installs it")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True,
                                      has_touch=True, locale="zh-CN")
        yield context.new_page()
        browser.close()


def tap_wechat_pay(page, base_url: str, number: str) -> None:
    """On the cut household's account page (-5.00 元, 已停电): choose 50 元 and tap 微信支付,
    a large target on a 360-px phone."""
    page.goto(f"{base_url}/a/{number}")
    expect(page.locator("#balance")).to_have_text("-5.00")
    expect(page.locator("#power")).to_have_text("已停电")
    page.get_by_text("50 元", exact=True).click()
    wechat = page.get_by_role("button", name="微信支付", exact=True)
    box = wechat.bounding_box()
    assert box["width"] >= 300 and box["height"] >= 48
    wechat.click()
