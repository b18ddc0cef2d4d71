"""A building manager's day in Debian's chromium, against the live system (simulated meters,
the real worker): log in as b1, see 1号楼 only, restore a cut household by hand and watch the
relay read back, approve a cut and watch the meter open, find it all in the audit log, log out;
a 2号楼 household is not found."""

import os

import pytest
from playwright.sync_api import expect, sync_playwright
from sqlmodel import select

from app.console.managers import add_manager
from app.console.models import BUILDING_MANAGER
from app.db import transaction
from app.estate.models import Account, Building, Estate
from tests.functional.conftest import ARGS, CHROMIUM

PASSWORD = "b1-password-123"


@pytest.fixture
def desk():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is missing: run `make test`, which installs it")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        yield context.new_page()
        browser.close()


def test_b1_restores_by_hand_approves_a_cut_and_sees_only_1号楼(stack, engine, desk):
    sim = stack.start_sim([[1, 2]], relay_delay_s=0.2)
    cut = stack.household(1, balance_fen=5_000, relay_open=True)  # cut, though it has money
    owing = stack.household(2, balance_fen=-300, relay_open=False, max_power_w=10**9)
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == cut)).one()
        building_a = s.get(Building, account.building_id)
        estate = s.get(Estate, building_a.estate_id)
        estate.cut_requires_approval = True  # the owing household waits for b1
        s.add(estate)
        building_b = Building(estate_id=estate.id, name="2号楼")
        s.add(building_b)
        s.flush()
        stranger = Account(number="299001", building_id=building_b.id, household="2-1-101",
                           price_yuan_per_kwh=account.price_yuan_per_kwh)
        s.add(stranger)
        add_manager(s, "b1", role=BUILDING_MANAGER, estate_id=estate.id, password=PASSWORD,
                    building_ids=[building_a.id])
    stack.start_web()
    stack.start_worker()
    base, page = stack.base_url, desk

    page.goto(f"{base}/manage/")
    page.get_by_label("用户名").fill("b1")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.locator("tr.building")).to_have_count(1)
    expect(page.locator("tr.building th")).to_have_text(building_a.name)

    page.goto(f"{base}/manage/accounts/{cut}")
    expect(page.locator(".relay-now").first).to_contain_text("已停电")
    page.get_by_label("理由").fill("住户已缴费，电表未合闸")
    page.get_by_role("button", name="手动复电").click()
    expect(page.locator(".relay-now").first).to_contain_text("供电中", timeout=15_000)
    expect(page.locator("tr.command td.state").first).to_have_text("done")
    assert sim.meter(0, 1).relay_open is False

    page.goto(f"{base}/manage/approvals")
    row = page.locator("tr.approval").filter(has_text=owing)
    expect(row).to_have_count(1, timeout=15_000)  # the worker asked for approval
    row.get_by_label("理由").fill("已电话通知，同意停电")
    row.get_by_role("button", name="同意停电").click()
    expect(page.locator("tr.approval").filter(has_text=owing)).to_have_count(0)
    page.goto(f"{base}/manage/accounts/{owing}")
    expect(page.locator(".relay-now").first).to_contain_text("已停电", timeout=15_000)
    assert sim.meter(0, 2).relay_open is True

    page.goto(f"{base}/manage/audit")
    log = page.locator("table.grid")
    expect(log).to_contain_text("account.restore")
    expect(log).to_contain_text("住户已缴费，电表未合闸")
    expect(log).to_contain_text("cut.approve")

    assert page.request.get(f"{base}/manage/accounts/299001").status == 404
    page.get_by_role("button", name="退出").click()
    expect(page.get_by_role("button", name="登录")).to_be_visible()
    page.goto(f"{base}/manage/accounts/{cut}")
    expect(page.get_by_role("button", name="登录")).to_be_visible()  # logged out: login again
