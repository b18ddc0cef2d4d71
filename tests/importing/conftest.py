"""Estate workbooks for the import's tests: filled from the real template with openpyxl, as a
manager fills it; and an empty estate to import them into."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from app.console.models import AuditEntry
from app.db import transaction
from app.estate.importing import template_bytes
from app.estate.importing.spec import SHEETS
from app.estate.models import Account, Building, Estate, Gateway, Meter
from app.ledger.models import LedgerEntry


def workbook(sheets: dict[str, list[dict]]) -> bytes:
    """The template with rows filled in: sheet key → rows (column key → cell value)."""
    book = load_workbook(io.BytesIO(template_bytes()))
    for sheet in SHEETS:
        ws = book[sheet.title]
        keys = [c.key for c in sheet.columns]
        for number, row in enumerate(sheets.get(sheet.key, []), start=2):
            for index, key in enumerate(keys, start=1):
                if row.get(key) is not None:
                    ws.cell(row=number, column=index, value=row[key])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def small_estate(buildings: int = 3, per_building: int = 2) -> dict[str, list[dict]]:
    """Rows of an estate: `buildings` buildings with a gateway, a common-area and a main meter
    each, and `per_building` households each (户号 B0UU), with opening balances."""
    rows = {"buildings": [], "gateways": [], "meters": [], "accounts": []}
    for b in range(1, buildings + 1):
        rows["buildings"].append({"name": f"{b}号楼", "share_scheme": "按面积",
                                  "share_period": "按日" if b % 2 else "按月",
                                  "common_price": "0.6", "line_loss_pct": "4.5"})
        rows["gateways"].append({"name": f"GW{b}", "host": f"192.168.1.{b}", "port": 502,
                                 "protocol": "modbus_tcp"})
        rows["meters"].append({"gateway": f"GW{b}", "unit": 240, "kind": "公区表",
                               "building": f"{b}号楼"})
        rows["meters"].append({"gateway": f"GW{b}", "unit": 241, "kind": "总表",
                               "building": f"{b}号楼", "max_power": 200000})
        for u in range(1, per_building + 1):
            rows["accounts"].append({
                "number": f"{b}{u:03d}", "building": f"{b}号楼", "household": f"{b}-1-{u:03d}",
                "holder_name": "张三", "phone": f"1381234{b:01d}{u:03d}", "floor_area": "89.5",
                "gateway": f"GW{b}", "unit": u, "price": "0.5583", "strategy": "居民",
                "opening": f"{u}.{b:02d}", "care": "否", "low_balance": "10", "cut_below": "0",
                "restore_above": "0", "emergency": "0"})
    return rows


@pytest.fixture
def estate_id(engine) -> int:
    with transaction(engine) as s:
        estate = Estate(name="导入小区", manager_phone="0571-88886666")
        s.add(estate)
        s.flush()
        return estate.id


def table_counts(engine) -> dict[str, int]:
    """How many rows each table the import writes holds."""
    with transaction(engine, read_only=True) as s:
        return {model.__name__: s.execute(sa.select(sa.func.count()).select_from(model)).scalar()
                for model in (Building, Gateway, Meter, Account, LedgerEntry, AuditEntry)}
