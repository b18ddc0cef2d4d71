"""The estate import: the template round-trips, re-importing changes nothing, a changed row
updates its object and is audited, CSV in UTF-8 (with or without BOM) and GB18030."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from sqlmodel import select

from app.console.models import AuditEntry
from app.db import transaction
from app.estate.demo_workbook import DEMO_WORKBOOK, demo_workbook_bytes
from app.estate.importing import import_file, template_bytes
from app.estate.importing.read import read_file
from app.estate.importing.spec import ACCOUNTS, SHEETS
from app.estate.models import Account, Building, Gateway, Meter
from app.ledger.models import OPENING, LedgerEntry
from app.ledger.services import balance_fen
from tests.importing.conftest import small_estate, table_counts, workbook


def run(engine, data: bytes, estate_id: int, **kwargs):
    with transaction(engine) as s:
        return import_file(s, data, estate_id=estate_id, file_name="estate.xlsx", **kwargs)


def test_the_template_has_every_sheet_header_note_and_list():
    book = load_workbook(io.BytesIO(template_bytes()))
    assert book.sheetnames[:4] == ["楼栋", "网关", "电表", "账户"]
    for sheet in SHEETS:
        ws = book[sheet.title]
        assert [c.value for c in ws[1]] == [c.header for c in sheet.columns]
        assert all(c.comment is not None and len(c.comment.text) > 4 for c in ws[1])
        assert ws.freeze_panes == "A2"
        lists = {str(dv.sqref).split(":")[0][:-1]: dv.formula1
                 for dv in ws.data_validations.dataValidation}
        for index, column in enumerate(sheet.columns):
            letter = chr(ord("A") + index)
            if column.choices:
                assert lists[letter] == '"' + ",".join(column.choices) + '"', column.header
            else:
                assert letter not in lists
    kinds = book["电表"].data_validations.dataValidation
    assert any(dv.formula1 == '"户表,公区表,总表"' for dv in kinds)
    assert any(dv.formula1 == '"modbus_tcp,modbus_rtu_over_tcp,dlt645_tcp"'
               for dv in book["网关"].data_validations.dataValidation)


def test_template_filled_with_3_buildings_and_200_accounts_imports(engine, estate_id):
    rows = small_estate(buildings=3, per_building=67)
    rows["accounts"] = rows["accounts"][:200]
    data = workbook(rows)
    result = run(engine, data, estate_id)
    assert result.ok and result.written, [p.text() for p in result.problems]
    assert {t: (c.created, c.updated, c.unchanged) for t, c in result.counts.items()} == {
        "楼栋": (3, 0, 0), "网关": (3, 0, 0), "电表": (206, 0, 0), "账户": (200, 0, 0)}
    with transaction(engine, read_only=True) as s:
        accounts = {a.number: a for a in s.exec(select(Account))}
        assert len(accounts) == 200
        a = accounts["2005"]
        building = s.get(Building, a.building_id)
        assert (building.name, building.share_period, str(building.common_price_yuan_per_kwh),
                str(building.line_loss_threshold_pct)) == ("2号楼", "month", "0.6000", "4.5000")
        assert (a.household, a.holder_phone, str(a.floor_area_m2), a.strategy) == \
            ("2-1-005", "13812342005", "89.5000", "residential")
        # every opening balance is in the ledger, as an entry of its own kind
        for row in rows["accounts"]:
            whole, part = row["opening"].split(".")
            assert balance_fen(s, accounts[row["number"]].id) == int(whole) * 100 + int(part)
        openings = s.exec(select(LedgerEntry).where(LedgerEntry.account_id == a.id)).all()
        assert [(e.kind, e.amount_fen, e.idempotency_key) for e in openings] == \
            [(OPENING, 502, "opening:2005")]
        meter = s.exec(select(Meter).where(Meter.account_id == a.id)).one()
        gateway = s.get(Gateway, meter.gateway_id)
        assert (gateway.name, gateway.host, gateway.port, meter.unit_id) == \
            ("GW2", "192.168.1.2", 502, 5)
        common = s.exec(select(Meter).where(Meter.common_area)).all()
        mains = s.exec(select(Meter).where(Meter.building_main)).all()
        assert len(common) == len(mains) == 3
        assert {m.account_id for m in common + mains} == {None}
        assert {m.max_power_w for m in mains} == {200000}
        assert {s.get(Building, m.building_id).name for m in mains} == {"1号楼", "2号楼", "3号楼"}
        audit = s.exec(select(AuditEntry).where(AuditEntry.object_id == "2005")).one()
        assert audit.action == "import.create" and audit.manager_name == "feikong"
        assert "联系电话=138****2005" in audit.after and "期初余额=5.02" in audit.after


def test_reimporting_the_same_file_changes_nothing(engine, estate_id):
    data = workbook(small_estate())
    assert run(engine, data, estate_id).written
    before = table_counts(engine)
    again = run(engine, data, estate_id)
    assert again.ok and again.changes == []
    assert {t: c.unchanged for t, c in again.counts.items()} == {
        "楼栋": 3, "网关": 3, "电表": 12, "账户": 6}
    assert table_counts(engine) == before  # no row, no ledger entry, no audit entry


def test_a_changed_phone_updates_the_account_and_is_audited(engine, estate_id):
    rows = small_estate()
    assert run(engine, workbook(rows), estate_id).written
    rows["accounts"][0]["phone"] = "0571-88881234"
    rows["buildings"][1]["share_scheme"] = "平均"
    before = table_counts(engine)
    result = run(engine, workbook(rows), estate_id)
    assert result.ok
    assert [(op.sheet.title, op.key, op.action) for op in result.changes] == [
        ("楼栋", "2号楼", "update"), ("账户", "1001", "update")]
    with transaction(engine, read_only=True) as s:
        account = s.exec(select(Account).where(Account.number == "1001")).one()
        assert account.holder_phone == "0571-88881234"
        assert s.exec(select(Building).where(Building.name == "2号楼")).one().share_scheme \
            == "equal"
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "import.update",
                                                AuditEntry.object_id == "1001")).one()
        assert (entry.before, entry.after) == ("联系电话=138****1001", "联系电话=057****1234")
    after = table_counts(engine)
    assert after["AuditEntry"] == before["AuditEntry"] + 3  # two updates and the import
    assert {k: v for k, v in after.items() if k != "AuditEntry"} == \
        {k: v for k, v in before.items() if k != "AuditEntry"}


def test_an_empty_optional_cell_keeps_what_the_console_set(engine, estate_id):
    rows = small_estate(1, 1)
    rows["accounts"][0].update(low_balance=None, care=None)
    assert run(engine, workbook(rows), estate_id).written
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == "1001")).one()
        assert (account.low_balance_threshold_fen, account.care_list) == (1000, False)
        account.low_balance_threshold_fen, account.care_list = 2500, True
    assert run(engine, workbook(rows), estate_id).changes == []
    with transaction(engine, read_only=True) as s:
        account = s.exec(select(Account).where(Account.number == "1001")).one()
        assert (account.low_balance_threshold_fen, account.care_list) == (2500, True)


def test_changing_an_opening_balance_is_refused_with_a_word_on_adjustments(engine, estate_id):
    rows = small_estate(1, 2)
    assert run(engine, workbook(rows), estate_id).written
    rows["accounts"][1]["opening"] = "99.00"
    rows["accounts"][0]["phone"] = "13900000000"
    before = table_counts(engine)
    result = run(engine, workbook(rows), estate_id)
    assert [p.text() for p in result.problems] == [
        "「账户」表第 3 行「期初余额（元）」：已有账户的期初余额不能修改（系统中为 2.01 元）：请在控制台"
        "对该户做调账"]
    assert not result.written and table_counts(engine) == before
    with transaction(engine, read_only=True) as s:  # the good row is not written either
        assert s.exec(select(Account).where(Account.number == "1001")).one().holder_phone \
            == "13812341001"


def csv_of(rows: list[dict], encoding: str) -> bytes:
    lines = [",".join(c.header for c in ACCOUNTS.columns)]
    for row in rows:
        lines.append(",".join(str(row.get(c.key) or "") for c in ACCOUNTS.columns))
    return "\r\n".join(lines).encode(encoding)


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig", "utf-8"])
def test_a_csv_of_accounts_in_gb18030_or_utf8_imports(engine, estate_id, encoding):
    rows = small_estate(2, 2)
    rows["accounts"][0]["holder_name"] = "欧阳娜娜"
    assert run(engine, workbook({**rows, "accounts": []}), estate_id).written
    data = csv_of(rows["accounts"], encoding)
    if encoding == "gb18030":
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
    assert data.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    result = run(engine, data, estate_id)
    assert result.ok, [p.text() for p in result.problems]
    assert {t: c.created for t, c in result.counts.items()}["账户"] == 4
    with transaction(engine, read_only=True) as s:
        account = s.exec(select(Account).where(Account.number == "1001")).one()
        assert (account.holder_name, account.household) == ("欧阳娜娜", "1-1-001")
        assert balance_fen(s, account.id) == 101


def test_a_csv_in_no_known_encoding_or_with_unknown_headers_is_refused(engine, estate_id):
    data = "户号,楼栋\n".encode("utf-16")
    assert [p.text() for p in run(engine, data, estate_id).problems] == [
        "无法识别文件的编码：请在 Excel 中另存为 .xlsx，或 CSV UTF-8"]
    result = run(engine, "名字,年龄\n张三,3\n".encode(), estate_id)
    assert [p.text() for p in result.problems] == [
        "认不出这个 CSV 是哪张表：第一行应是 楼栋、网关、电表 或 账户 表的列名（见模板）"]
    assert table_counts(engine)["Account"] == 0


def test_the_shipped_demo_workbook_is_what_its_script_writes():
    shipped, _ = read_file(DEMO_WORKBOOK.read_bytes())
    built, _ = read_file(demo_workbook_bytes())
    assert {k: [r.cells for r in v.rows] for k, v in shipped.items()} == \
        {k: [r.cells for r in v.rows] for k, v in built.items()}
    assert len(shipped["accounts"].rows) == 60  # 3 gateways, one per protocol


def test_the_managers_guide_names_every_column():
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "import.md").read_text("utf-8")
    for sheet in SHEETS:
        assert f"### {sheet.title}" in guide
        for column in sheet.columns:
            assert f"| {column.header} |" in guide, column.header


def test_a_household_meter_listed_on_the_meter_sheet_keeps_its_power_and_account(engine,
                                                                                 estate_id):
    rows = small_estate(1, 2)
    rows["meters"].append({"gateway": "GW1", "unit": 2, "kind": "户表", "max_power": 9000})
    rows["meters"].append({"gateway": "GW1", "unit": 7, "kind": "户表", "building": "2号楼"})
    result = run(engine, workbook(rows), estate_id)
    assert [p.text() for p in result.problems] == [
        "「电表」表第 5 行「楼栋」：楼栋「2号楼」不存在：请先在楼栋表中添加"]
    rows["meters"][-1]["building"] = None
    assert run(engine, workbook(rows), estate_id).written
    with transaction(engine, read_only=True) as s:
        account = s.exec(select(Account).where(Account.number == "1002")).one()
        meter = s.exec(select(Meter).where(Meter.account_id == account.id)).one()
        assert (meter.unit_id, meter.max_power_w, meter.common_area, meter.building_id) == \
            (2, 9000, False, None)
        vacant = s.exec(select(Meter).where(Meter.unit_id == 7)).one()
        assert (vacant.account_id, vacant.max_power_w) == (None, 13_800)
    rows["meters"][2]["max_power"] = 9500
    changed = run(engine, workbook(rows), estate_id)
    assert [(op.key, op.changed) for op in changed.changes] == [
        ("GW1 / 2", {"max_power_w": (9000, 9500)})]


def test_gateways_of_each_protocol_and_dlt645_addresses_import(engine, estate_id):
    """Issue 18: a gateway's protocol comes in with it; a DL/T 645 gateway's meters are named by
    their 12-digit 表号 (leading zeros kept as text, or left out), a Modbus one's by 1–247."""
    rows = small_estate()
    rows["gateways"][1]["protocol"] = "modbus_rtu_over_tcp"
    rows["gateways"][2]["protocol"] = "dlt645_tcp"
    for meter in rows["meters"]:
        if meter["gateway"] == "GW3":
            meter["unit"] = f"{meter['unit']:012d}"  # 000000000240, 000000000241
    for account in rows["accounts"]:
        if account["gateway"] == "GW3":
            account["unit"] = f"{202612000000 + account['unit']:012d}"
    assert run(engine, workbook(rows), estate_id).written
    with transaction(engine, read_only=True) as s:
        protocols = dict(s.exec(select(Gateway.name, Gateway.protocol)).all())
        units = sorted(s.exec(select(Meter.unit_id).join(Gateway, Gateway.id == Meter.gateway_id)
                              .where(Gateway.name == "GW3")).all())
    assert protocols == {"GW1": "modbus_tcp", "GW2": "modbus_rtu_over_tcp", "GW3": "dlt645_tcp"}
    assert units == [240, 241, 202612000001, 202612000002]
    assert run(engine, workbook(rows), estate_id).changes == []  # idempotent, by 表号 too

    rows["accounts"][-1]["unit"] = "2026120000011"  # 13 digits
    rows["accounts"][0]["unit"] = 248  # a Modbus gateway's
    result = run(engine, workbook(rows), estate_id)
    assert not result.ok and [p.text() for p in result.problems] == [
        "「账户」表第 2 行「表地址」：应为 1–247 的整数",
        "「账户」表第 7 行「表地址」：应为 DL/T 645 表地址：铭牌上的 12 位表号，例如 000012345678",
    ]


def test_a_building_floor_area_is_imported_checked_and_kept(engine, estate_id):
    from decimal import Decimal

    rows = small_estate()
    rows["buildings"][0]["floor_area"] = "5230.5"
    assert run(engine, workbook(rows), estate_id).written
    with transaction(engine, read_only=True) as s:
        areas = dict(s.exec(select(Building.name, Building.floor_area_m2)).all())
    assert areas == {"1号楼": Decimal("5230.5"), "2号楼": None, "3号楼": None}
    rows["buildings"][0]["floor_area"] = None  # left empty: kept
    assert run(engine, workbook(rows), estate_id).changes == []
    rows["buildings"][1]["floor_area"] = "0"
    result = run(engine, workbook(rows), estate_id)
    assert [p.text() for p in result.problems] == [
        "「楼栋」表第 3 行「建筑面积（㎡）」：应为大于 0、不超过 10000000 的面积（平方米），最多四位小数"]
