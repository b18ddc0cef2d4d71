"""The month's bills sheet (月度账单): exported by a background job from the console, read back with
openpyxl, every household's figures equal its resident bill's (`month_bill`) and its ledger's,
to the fen, and the totals row the ledger's sums; the same after the days are frozen."""

from __future__ import annotations

import datetime as dt

import httpx
import sqlalchemy as sa
from sqlmodel import select

from app.batch.runner import Runner
from app.db import transaction
from app.estate.freeze import freeze_due_days
from app.estate.models import Account
from app.ledger.days import day_start
from app.ledger.models import (ADJUSTMENT, CHARGE, EMERGENCY_CREDIT, OPENING, REFUND, SHARE,
                               TOPUP, LedgerEntry)
from app.resident.statements import month_bill, next_month
from tests.reports.conftest import console_login, fen, sheet_rows, wh

E = LedgerEntry.__table__
# A sheet column → the ledger kinds it sums and its sign on the sheet (charges, shares and
# refunds are shown as positive amounts).
KIND_COLUMNS = {"电费": ((CHARGE,), -1), "公摊": ((SHARE,), -1), "缴费": ((TOPUP,), 1),
                "调账": ((ADJUSTMENT,), 1), "退款": ((REFUND,), -1),
                "应急用电": ((EMERGENCY_CREDIT,), 1), "开户余额": ((OPENING,), 1)}


def export_bills(base_url: str, engine, settings, manager: str, month: dt.date,
                 building: str = "", fmt: str = "xlsx") -> tuple[httpx.Client, int, bytes]:
    """The bills export as the console starts it: the form posted, the job run by the runner,
    the file downloaded from the job's page."""
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
    token = console_login(client, manager)
    started = client.post("/manage/jobs/export", data={
        "export": "bills", "month": f"{month:%Y-%m}", "building": building, "format": fmt,
        "csrftoken": token})
    assert started.status_code == 303, started.text
    job_id = int(started.headers["location"].rsplit("/", 1)[1])
    assert Runner(engine, settings).run_pending() >= 1
    page = client.get(f"/manage/jobs/{job_id}")
    assert page.status_code == 200 and "已完成" in page.text
    download = client.get(f"/manage/jobs/{job_id}/download")
    assert download.status_code == 200, download.text
    return client, job_id, download.content


def ledger_by_kind(engine, month: dt.date) -> dict[tuple[int, str], int]:
    start, end = day_start(month), day_start(next_month(month))
    with transaction(engine, read_only=True) as s:
        return {(a, k): int(v) for a, k, v in s.execute(
            sa.select(E.c.account_id, E.c.kind, sa.func.sum(E.c.amount_fen))
            .where(E.c.created_at >= start, E.c.created_at < end)
            .group_by(E.c.account_id, E.c.kind))}


def ledger_before(engine, at: dt.datetime) -> dict[int, int]:
    with transaction(engine, read_only=True) as s:
        return {a: int(v) for a, v in s.execute(
            sa.select(E.c.account_id, sa.func.sum(E.c.amount_fen))
            .where(E.c.created_at < at).group_by(E.c.account_id))}


def test_every_household_and_the_totals_equal_the_ledger_to_the_fen(month, engine, settings,
                                                                     stack):
    client, job_id, data = export_bills(stack.base_url, engine, settings, "admin", month.month)
    header, rows = sheet_rows(data)
    col = {name: i for i, name in enumerate(header)}
    body, totals = rows[:-1], rows[-1]
    assert totals[0] == "合计" and len(body) == 200
    by_kind = ledger_by_kind(engine, month.month)
    opening = ledger_before(engine, day_start(month.month))
    closing = ledger_before(engine, day_start(next_month(month.month)))
    with transaction(engine, read_only=True) as s:
        accounts = {a.number: a for a in s.exec(select(Account))}
        bills = {n: month_bill(s, a, month.month) for n, a in accounts.items()}
    periods = [h for h in header if h.endswith(" 电量（kWh）") and not h.startswith("第")]
    tiers = [h for h in header if h.startswith("第") and h.endswith(" 电量（kWh）")]
    assert {"peak 电量（kWh）", "valley 电量（kWh）"} <= set(periods)
    assert {"第1档 电量（kWh）", "第2档 电量（kWh）"} <= set(tiers)
    for row in body:
        a = accounts[row[col["户号"]]]
        bill = bills[a.number]
        assert fen(row[col["期初余额"]]) == opening.get(a.id, 0) == bill.opening_fen
        assert fen(row[col["期末余额"]]) == closing[a.id] == bill.closing_fen
        for name, (kinds, sign) in KIND_COLUMNS.items():
            assert fen(row[col[name]]) == sign * sum(by_kind.get((a.id, k), 0) for k in kinds), \
                (a.number, name)
        assert wh(row[col["用电量（kWh）"]]) == bill.energy_wh > 0
        for group in (periods, tiers):  # each breakdown adds up to the month's energy and fen
            if a.tariff_id is None:
                assert all(row[col[h]] is None or wh(row[col[h]]) == 0 for h in group)
                continue
            assert sum(wh(row[col[h]]) for h in group) == bill.energy_wh
            assert sum(fen(row[col[h.replace("电量（kWh）", "电费")]]) for h in group) == \
                -bill.charges_fen
        lines = {(line.period, line.tier): line for line in bill.energy_lines}
        for (period, tier), line in lines.items():
            if period is not None:
                assert wh(row[col[f"{period} 电量（kWh）"]]) == sum(
                    x.energy_wh for x in bill.energy_lines if x.period == period)
    for name, (kinds, sign) in KIND_COLUMNS.items():
        assert fen(totals[col[name]]) == sign * sum(v for (a, k), v in by_kind.items()
                                                     if k in kinds), name
    assert fen(totals[col["期初余额"]]) == sum(opening.values())
    assert fen(totals[col["期末余额"]]) == sum(closing.values())
    assert any(fen(r[col["应急用电"]]) == 0 and r[col["应急用电"]] is not None for r in body)
    emergency = [r for r in body if r[col["户号"]] == month.numbers["2号楼"][0]][0]
    assert fen(emergency[col["应急用电"]]) == 0 and fen(emergency[col["缴费"]]) > 0  # repaid
    client.close()


def test_the_same_sheet_once_the_days_are_frozen(month, engine, settings, stack):
    _c, _j, before = export_bills(stack.base_url, engine, settings, "admin", month.month)
    while freeze_due_days(engine):  # every ended day
        pass
    _c, _j, after = export_bills(stack.base_url, engine, settings, "admin", month.month)
    assert sheet_rows(before)[1] == sheet_rows(after)[1]
    last = month.month.replace(day=1) - dt.timedelta(days=1)
    _c, _j, old = export_bills(stack.base_url, engine, settings, "finance", last)
    header, rows = sheet_rows(old)
    col = {name: i for i, name in enumerate(header)}
    assert fen(rows[-1][col["电费"]]) == 200 * 86 and fen(rows[-1][col["期末余额"]]) == -200 * 98


def test_the_building_totals_sheet_and_csv(month, engine, settings, stack):
    _c, _j, data = export_bills(stack.base_url, engine, settings, "admin", month.month)
    header, rows = sheet_rows(data, "楼栋合计")
    assert [r[0] for r in rows[:-1]] == ["1号楼", "2号楼", "3号楼"]
    assert [r[header.index("户数")] for r in rows[:-1]] == [67, 67, 66]
    main_header, main = sheet_rows(data)
    for name in ("电费", "公摊", "期末余额"):
        assert fen(rows[-1][header.index(name)]) == fen(main[-1][main_header.index(name)])
    _c, _j, csv_bytes = export_bills(stack.base_url, engine, settings, "admin", month.month,
                                     building=str(month.buildings["2号楼"]), fmt="csv")
    assert csv_bytes.startswith("\ufeff".encode())
    lines = csv_bytes.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("楼栋,户号,房号,户主,电话,期初余额")
    assert len(lines) == 1 + 67 + 1 and lines[-1].startswith("合计,")
    assert all(line.split(",")[0] == "2号楼" for line in lines[1:-1])
