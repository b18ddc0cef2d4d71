"""The console's import page: an estate administrator downloads the template, checks a file
(nothing written, every problem by sheet, row and column, or what would change) and imports it;
a building manager and finance are refused (404, as anything outside their scope)."""

from __future__ import annotations

import hashlib
import io

from openpyxl import load_workbook
from sqlmodel import select

from app.batch.runner import Runner
from app.console.models import AuditEntry
from app.db import transaction
from app.estate.models import Account
from app.ledger.services import balance_fen
from tests.console.conftest import console, csrf, estate  # noqa: F401  (fixtures)
from tests.importing.conftest import small_estate, table_counts, workbook

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def upload(client, data: bytes, action: str = "check", sha256: str | None = None,
           name: str = "小区.xlsx"):
    """As the page's htmx form sends it: the file, and the CSRF token in its header."""
    form = {"action": action} | ({"sha256": sha256} if sha256 else {})
    return client.post("/manage/import", data=form, files={"file": (name, data, XLSX)},
                       headers={"x-csrftoken": csrf(client), "hx-request": "true"})


def fresh_rows():
    """Rows for the console estate (1号楼 and 2号楼 exist): a new building and its households."""
    rows = small_estate(3, 2)
    return {key: value[4:] if key in ("accounts", "meters") else value[2:]
            for key, value in rows.items()}


def test_the_administrator_checks_then_imports(console, engine, estate):
    client = console("admin")
    page = client.get("/manage/import")
    assert page.status_code == 200 and 'type="file"' in page.text
    assert 'href="/manage/import"' in page.text  # the nav link
    template = client.get("/manage/import/template")
    assert template.status_code == 200 and template.headers["content-type"] == XLSX
    assert load_workbook(io.BytesIO(template.content)).sheetnames[:4] == ["楼栋", "网关", "电表",
                                                                          "账户"]
    data = workbook(fresh_rows())
    before = table_counts(engine)
    checked = upload(client, data)
    assert checked.status_code == 200
    assert "检查通过，尚未导入" in checked.text
    assert "新增 账户 3001：楼栋=3号楼; 房号=3-1-001" in checked.text
    assert f'name="sha256" value="{hashlib.sha256(data).hexdigest()}"' in checked.text
    assert table_counts(engine) == before  # the check wrote nothing
    other = upload(client, workbook(small_estate(3, 1)), "apply",
                   hashlib.sha256(data).hexdigest())
    assert "文件与检查时的不同" in other.text and table_counts(engine) == before
    queued = upload(client, data, "apply", hashlib.sha256(data).hexdigest())
    assert queued.status_code == 200 and queued.headers["hx-redirect"].startswith("/manage/jobs/")
    assert table_counts(engine) == before  # imported by the background job, not the request
    assert Runner(engine, client.app.state.settings).run_pending() == 1
    done = client.get(queued.headers["hx-redirect"])
    assert done.status_code == 200 and "已完成" in done.text and "小区.xlsx" in done.text
    with transaction(engine, read_only=True) as s:
        account = s.exec(select(Account).where(Account.number == "3002")).one()
        assert balance_fen(s, account.id) == 203
        entry = s.exec(select(AuditEntry).where(AuditEntry.object_id == "3002")).one()
        assert (entry.manager_name, entry.action, entry.reason) == \
            ("admin", "import.create", "小区.xlsx")
    assert "3002" in client.get("/manage/accounts?q=3002").text
    again = upload(client, data)
    assert "系统中已是这些内容，无需导入" in again.text and 'id="apply"' not in again.text


def test_problems_are_listed_by_sheet_row_and_column(console, engine, estate):
    rows = fresh_rows()
    rows["accounts"][0]["phone"] = "12345"
    rows["accounts"][1]["building"] = "9号楼"
    client = console("admin")
    before = table_counts(engine)
    reply = upload(client, workbook(rows))
    assert reply.status_code == 200  # htmx swaps only 2xx answers
    assert "中有 2 处错误，未导入任何内容" in reply.text
    assert ('<td>账户</td><td class="num">2</td><td>联系电话</td><td>不是有效的电话号码'
            in reply.text)
    assert ('<td>账户</td><td class="num">3</td><td>楼栋</td><td>楼栋「9号楼」不存在'
            in reply.text)
    assert 'id="apply"' not in reply.text
    assert table_counts(engine) == before
    plain = client.post("/manage/import", files={"file": ("x.xlsx", workbook(rows), XLSX)},
                        headers={"x-csrftoken": csrf(client)})  # not htmx: a 400
    assert plain.status_code == 400 and "中有 2 处错误" in plain.text
    assert table_counts(engine) == before


def test_a_building_manager_and_finance_may_not_import(console, engine, estate):
    data = workbook(fresh_rows())
    clients = [console("b1"), console("finance")]
    before = table_counts(engine)
    for client in clients:
        assert 'href="/manage/import"' not in client.get("/manage/").text
        assert client.get("/manage/import").status_code == 404
        assert client.get("/manage/import/template").status_code == 404
        assert upload(client, data).status_code == 404
        assert upload(client, data, "apply", hashlib.sha256(data).hexdigest()).status_code == 404
    assert table_counts(engine) == before


def test_an_upload_without_the_csrf_header_is_refused(console, engine, estate):
    client = console("admin")
    before = table_counts(engine)
    reply = client.post("/manage/import", data={"action": "apply"},
                        files={"file": ("x.xlsx", workbook(fresh_rows()), XLSX)})
    assert reply.status_code == 403 and table_counts(engine) == before


def test_an_oversize_upload_gets_413(console, engine, estate):
    client = console("admin")
    reply = client.post("/manage/import", files={"file": ("big.csv", b"x" * (21 << 20),
                                                          "text/csv")},
                        headers={"x-csrftoken": csrf(client)})
    assert reply.status_code == 413 and "20 MB" in reply.text
