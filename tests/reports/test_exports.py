"""The console's other exports on the month's estate: payments by channel equal the
reconciliation's; a building manager's exports hold only their buildings (holders masked), and
what is outside them is not found; every export is in the audit log."""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from sqlmodel import select

from app.console.models import AuditEntry
from app.db import transaction
from app.estate.models import Account
from app.ledger.days import ONE_DAY, day_start
from app.orders.models import PAID, REFUND_SUCCEEDED, Order, ReconcileRun, Refund
from tests.reports.conftest import console_login, fen, sheet_rows
from tests.reports.test_bills import export_bills


def client_of(base_url: str, manager: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
    console_login(client, manager)
    return client


def download(client: httpx.Client, kind: str, fmt: str = "xlsx", **params) -> bytes:
    reply = client.get("/manage/exports/download", params={"kind": kind, "format": fmt, **params})
    assert reply.status_code == 200, reply.text
    assert "attachment" in reply.headers["content-disposition"]
    return reply.content


def our_payments(engine, day) -> dict[str, tuple[int, int, int, int]]:
    """Per channel, from the orders and refunds themselves: (payments, fen, refunds, fen)."""
    start, end = day_start(day), day_start(day + ONE_DAY)
    out = {}
    with transaction(engine, read_only=True) as s:
        for channel in ("alipay", "wechat"):
            paid = s.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(
                Order.amount_fen), 0)).where(Order.channel == channel, Order.status == PAID,
                                             Order.paid_at >= start, Order.paid_at < end)).one()
            back = s.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(
                Refund.amount_fen), 0)).where(Refund.channel == channel,
                                              Refund.status == REFUND_SUCCEEDED,
                                              Refund.confirmed_at >= start,
                                              Refund.confirmed_at < end)).one()
            out[channel] = (paid[0], int(paid[1]), back[0], int(back[1]))
    return out


def test_payments_by_channel_equal_the_reconciliation(month, engine, stack):
    finance = client_of(stack.base_url, "finance")
    header, rows = sheet_rows(download(finance, "payments", day=month.paid_day.isoformat()))
    col = {name: i for i, name in enumerate(header)}
    summary = {r[col["渠道"]]: r for r in rows[:-1]}
    assert set(summary) == {"支付宝", "微信支付"}
    ours = our_payments(engine, month.paid_day)
    with transaction(engine, read_only=True) as s:
        runs = {r.channel: r for r in s.exec(select(ReconcileRun).where(
            ReconcileRun.bill_date == month.paid_day))}
    refunds = 0
    for channel, zh in (("alipay", "支付宝"), ("wechat", "微信支付")):
        row, run, (paid, paid_fen, back, back_fen) = summary[zh], runs[channel], ours[channel]
        assert (row[col["缴费笔数"]], fen(row[col["缴费金额"]])) == (paid, paid_fen)
        assert (row[col["退款笔数"]], fen(row[col["退款金额"]])) == (back, back_fen)
        assert fen(row[col["净额"]]) == paid_fen - back_fen == run.bill_amount_fen
        assert row[col["对账单笔数"]] == run.lines == paid + back
        assert (row[col["差异数"]], row[col["与对账单一致"]]) == (0, "一致")
        refunds += back
    assert refunds == 3 and sum(v[0] for v in ours.values()) == len(month.payments)
    _h, lines = sheet_rows(download(finance, "payments", day=month.paid_day.isoformat()), "明细")
    assert len(lines[:-1]) == len(month.payments) + 3 and lines[-1][0] == "合计"
    assert sum(fen(line[-1]) for line in lines[:-1]) == fen(lines[-1][-1]) == \
        sum(r.bill_amount_fen for r in runs.values())
    by_month = sheet_rows(download(finance, "payments", month=f"{month.month:%Y-%m}"))
    assert by_month[1][-1][:7] == rows[-1][:7]  # the totals: every payment was this month
    csv = download(finance, "payments", "csv", day=month.paid_day.isoformat()).decode("utf-8-sig")
    assert csv.splitlines()[0].startswith("日期,渠道,缴费笔数,缴费金额")
    finance.close()


def test_a_building_manager_exports_only_their_buildings(month, engine, settings, stack):
    ones = set(month.numbers["1号楼"])
    _client, _job, data = export_bills(stack.base_url, engine, settings, "b1", month.month)
    header, rows = sheet_rows(data)
    col = {name: i for i, name in enumerate(header)}
    assert {r[col["户号"]] for r in rows[:-1]} == ones
    assert {r[col["楼栋"]] for r in rows[:-1]} == {"1号楼"}
    assert all(r[col["户主"]].endswith("**") and "****" in r[col["电话"]] for r in rows[:-1])
    b1 = client_of(stack.base_url, "b1")
    day = month.paid_day.isoformat()
    header, lines = sheet_rows(download(b1, "payments", day=day), "明细")
    assert lines[:-1] and {line[header.index("户号")] for line in lines[:-1]} <= ones
    assert "对账单净额" not in sheet_rows(download(b1, "payments", day=day))[0]
    header, owing = sheet_rows(download(b1, "arrears"))
    assert owing[:-1] and {r[header.index("户号")] for r in owing[:-1]} <= ones
    header, acts = sheet_rows(download(b1, "audit", month=f"{month.month:%Y-%m}"))
    assert acts and all(r[header.index("操作人")] == "b1" or r[header.index("对象")] in ones
                        for r in acts)
    other = month.buildings["2号楼"]
    assert b1.get("/manage/exports/download", params={
        "kind": "payments", "format": "xlsx", "day": day, "building": other}).status_code == 404
    admin = client_of(stack.base_url, "admin")
    _c, admin_job, full = export_bills(stack.base_url, engine, settings, "admin", month.month)
    header, rows = sheet_rows(full)
    assert len(rows) == 201 and rows[0][header.index("户主")].endswith("明")
    assert b1.get(f"/manage/jobs/{admin_job}").status_code == 404
    assert b1.get(f"/manage/jobs/{admin_job}/download").status_code == 404
    assert admin.get(f"/manage/jobs/{_job}").status_code == 200  # the estate's jobs
    assert admin.get(f"/manage/jobs/{_job}/download").status_code == 404  # b1's own file
    b1.close()
    admin.close()


def test_each_export_is_audited(month, engine, settings, stack):
    finance = client_of(stack.base_url, "finance")
    download(finance, "arrears", "csv")
    download(finance, "commands", month=f"{month.month:%Y-%m}",
             building=str(month.buildings["3号楼"]))
    export_bills(stack.base_url, engine, settings, "b1", month.month,
                 building=str(month.buildings["1号楼"]))
    with transaction(engine, read_only=True) as s:
        entries = [(e.manager_name, e.action, e.after) for e in s.exec(
            select(AuditEntry).where(AuditEntry.action.like("export.%")).order_by(AuditEntry.id))]
        owing = s.execute(sa.select(sa.func.count()).select_from(Account)).scalar()
    assert [e[:2] for e in entries] == [("finance", "export.arrears"),
                                        ("finance", "export.commands"), ("b1", "export.bills")]
    assert entries[0][2].startswith("csv; period ") and entries[0][2].endswith(" rows")
    assert f"building {month.buildings['3号楼']}" in entries[1][2]
    assert entries[2][2] == (f"xlsx; period {month.month:%Y-%m}; building "
                             f"{month.buildings['1号楼']}; 67 rows")
    assert owing == 200
    finance.close()
