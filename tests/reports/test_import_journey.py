"""An estate administrator brings their estate in, in Debian's chromium against the live app
with its batch runner (as `feikong serve` runs it): a workbook with two bad rows is checked and
both errors are shown by row and column, nothing imported; the fixed workbook passes the check,
its import is queued and the job's page shows it waiting; the runner starts, and the page, which
polls, shows the progress bar reach 100 %; a household of the workbook is found on the
accounts list."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect, sync_playwright

from app.batch.runner import run_batch_jobs
from app.console.managers import add_manager
from app.console.models import ESTATE_ADMIN
from app.db import transaction
from app.estate.models import Estate
from tests.functional.conftest import ARGS, CHROMIUM
from tests.importing.conftest import small_estate, table_counts, workbook

PASSWORD = "import journey 2026"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def desk():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is missing: run `make test`, which installs it")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page = context.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        yield page
        browser.close()
        assert errors == [], errors


def test_two_bad_rows_then_the_fixed_workbook_imported_with_its_progress(stack, engine,
                                                                         settings, desk):
    with transaction(engine) as s:
        estate = Estate(name="新小区", manager_phone="0571-88886666")
        s.add(estate)
        s.flush()
        add_manager(s, "admin", role=ESTATE_ADMIN, estate_id=estate.id, password=PASSWORD)
    stack.start_web()
    page, base = desk, stack.base_url
    good = small_estate(3, 4)
    bad = small_estate(3, 4)
    bad["accounts"][0]["phone"] = "12345"
    bad["accounts"][5]["building"] = "9号楼"

    page.goto(f"{base}/manage/import")
    page.get_by_label("用户名").fill("admin")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.locator("h1")).to_have_text("导入小区资料")
    before = table_counts(engine)
    page.set_input_files("#file", files=[{"name": "新小区.xlsx", "mimeType": XLSX,
                                          "buffer": workbook(bad)}])
    page.get_by_role("button", name="检查").click()
    expect(page.locator("#problems")).to_contain_text("中有 2 处错误，未导入任何内容")
    problems = page.locator("tr.problem")
    expect(problems).to_have_count(2)
    expect(problems.nth(0)).to_contain_text("账户")
    expect(problems.nth(0).locator("td").nth(1)).to_have_text("2")
    expect(problems.nth(0).locator("td").nth(2)).to_have_text("联系电话")
    expect(problems.nth(1).locator("td").nth(1)).to_have_text("7")
    expect(problems.nth(1).locator("td").nth(2)).to_have_text("楼栋")
    expect(page.locator("#apply")).to_have_count(0)
    assert table_counts(engine) == before

    page.set_input_files("#file", files=[{"name": "新小区.xlsx", "mimeType": XLSX,
                                          "buffer": workbook(good)}])
    page.get_by_role("button", name="检查").click()
    expect(page.locator("#checked")).to_contain_text("检查通过，尚未导入")
    page.get_by_role("button", name="确认导入").click()
    expect(page).to_have_url(f"{base}/manage/jobs/1")
    expect(page.locator("h1")).to_contain_text("导入小区资料")
    expect(page.locator("#job-state")).to_contain_text("排队中")  # no runner yet
    assert table_counts(engine) == before
    stack.lt.spawn(run_batch_jobs(engine, settings, every_s=0.2))  # the page polls: it moves
    bar = page.locator("progress#job-progress")
    expect(bar).to_have_attribute("value", "6", timeout=15_000)
    expect(bar).to_have_attribute("max", "6")
    expect(page.locator("#job-progress-text")).to_have_text("已完成 6 / 6（100%）")
    expect(page.locator("#job-state")).to_contain_text("已完成")
    expect(page.locator("#job-message")).to_contain_text("账户 新增 12")

    page.locator("#job-accounts").click()
    page.get_by_label("户号、房号或户主姓名").fill("2003")
    page.get_by_role("button", name="筛选").click()
    row = page.locator("table.grid tbody tr").filter(has_text="2003")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("2-1-003")
