"""Fixtures of the journeys: a cut household on a live system, and a phone-sized browser."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

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
