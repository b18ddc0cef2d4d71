"""An estate for the exports' tests: 3 buildings and 200 households brought in by the importer
(app/estate/importing, from the real template), its managers (admin, b1 of 1号楼, finance), and
a month of money through the real services:
- last month (as the batch writers post it, `insert_entries` at a time of last month): a day of
  charges with time-of-use memos and a share, so that this month opens on a balance;
- this month: charges priced by the worker's own path (`post_consumption`, `post_accrued`;
  1号楼 on 浙江's tiered time-of-use tariff, some households across the tier bound), every
  building's common-area share (`post_shares`), payments through the sandbox cashier of both
  providers (their notifications credit them), refunds through the providers
  (`refund_balance`), adjustments through the console's own form, an emergency advance and its
  repayment by a payment;
then both channels' bills of the payments' day reconciled (`reconcile_day`)."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from openpyxl import load_workbook
from sqlmodel import select

from app.billing.emergency import take_emergency_credit
from app.billing.services import insert_entries, post_accrued, post_consumption
from app.billing.shares import post_shares
from app.console.managers import add_manager
from app.console.models import BUILDING_MANAGER, ESTATE_ADMIN, FINANCE
from app.db import transaction, utcnow
from app.estate.importing import import_file
from app.estate.models import Account, Building, Estate, Meter
from app.ledger.days import ONE_DAY, day_start, local_day
from app.ledger.models import CHARGE, SHARE
from app.orders.models import PAID, Order
from app.orders.reconcile import reconcile_day
from app.orders.refunds import RefundRequest, refund_balance
from app.resident.statements import month_of, previous_month
from app.tariffs.store import add_tariff
from tests.app.test_orders_jobs import pay, providers, web  # noqa: F401  (fixtures)
from tests.importing.conftest import small_estate, workbook

PASSWORD = "reports password 2026"
EXAMPLES = Path(__file__).resolve().parent.parent / "tariffs" / "examples"
TARIFF = "浙江居民阶梯分时"
PER_BUILDING = (67, 67, 66)  # 200 households


@dataclass
class Month:
    estate_id: int
    buildings: dict[str, int]  # name → id
    numbers: dict[str, list[str]]  # building name → 户号
    month: dt.date
    paid_day: dt.date | None = None
    payments: list[str] = field(default_factory=list)  # out_trade_no


def estate_rows() -> dict[str, list[dict]]:
    rows = small_estate(3, max(PER_BUILDING))
    rows["accounts"] = [r for r in rows["accounts"]
                        if int(r["number"][1:]) <= PER_BUILDING[int(r["number"][0]) - 1]]
    for r in rows["accounts"]:
        if r["building"] == "1号楼":
            r["tariff"] = TARIFF
        r["holder_name"] = "王" + "伟芳娜敏静"[int(r["number"]) % 5] + "明"
    return rows


def import_estate(engine) -> tuple[int, dict[str, int], dict[str, list[str]]]:
    with transaction(engine) as s:
        add_tariff(s, TARIFF, (EXAMPLES / "zhejiang_tiered_tou.json").read_text(),
                   dt.date(2020, 1, 1))
        estate = Estate(name="报表小区", manager_phone="0571-88886666")
        s.add(estate)
        s.flush()
        estate_id = estate.id
    with transaction(engine) as s:
        result = import_file(s, workbook(estate_rows()), estate_id=estate_id,
                             file_name="报表小区.xlsx")
        assert result.ok and result.written, [p.text() for p in result.problems[:5]]
    with transaction(engine) as s:
        buildings = {b.name: b.id for b in s.exec(select(Building).where(
            Building.estate_id == estate_id))}
        numbers = {name: list(s.exec(select(Account.number).where(Account.building_id == bid)
                                     .order_by(Account.number)))
                   for name, bid in buildings.items()}
        for name, role, scope in (("admin", ESTATE_ADMIN, []),
                                  ("b1", BUILDING_MANAGER, [buildings["1号楼"]]),
                                  ("finance", FINANCE, [])):
            add_manager(s, name, role=role, estate_id=estate_id, password=PASSWORD,
                        building_ids=scope)
    return estate_id, buildings, numbers


def accounts_of(engine, numbers: list[str]) -> list[tuple[Account, Meter]]:
    with transaction(engine, read_only=True) as s:
        return list(s.execute(select(Account, Meter).join(Meter, Meter.account_id == Account.id)
                              .where(Account.number.in_(numbers))
                              .order_by(Account.number)).all())


def last_month(engine, numbers: list[str], month: dt.date) -> None:
    """A day of last month for every household: two charges (a peak and a valley hour, in the
    worker's memo words) and a share, as the batch writers post them."""
    at = day_start(previous_month(month)) + dt.timedelta(days=14, hours=3)
    rows = []
    for account, meter in accounts_of(engine, numbers):
        a = account.id
        rows += [(a, -57, CHARGE, f"charge:{meter.id}:0:100", "peak 100 Wh × 0.568", 100),
                 (a, -29, CHARGE, f"charge:{meter.id}:100:200", "valley 100 Wh × 0.288", 100),
                 (a, -12, SHARE, f"share:{account.building_id}:old:{a}", "公摊 按面积", None)]
    with transaction(engine) as s:
        insert_entries(s.connection(), rows, created_at=at)


def charge_this_month(engine, numbers: list[str]) -> None:
    """Each household charged by the worker's pricing for a peak and a valley hour (1号楼's
    tariff by time: no period registers), posted at once; every seventh household of 1号楼
    1 kWh below its yearly tier bound, so that its charge crosses into 第2档."""
    now = utcnow()
    today = local_day(now)
    peak_end = day_start(today - ONE_DAY) + dt.timedelta(hours=11)
    valley_end = day_start(today - ONE_DAY) + dt.timedelta(hours=23, minutes=30)
    with transaction(engine) as s:
        for k, (account, meter) in enumerate(accounts_of(engine, numbers)):
            account, meter = s.get(Account, account.id), s.get(Meter, meter.id)
            if account.tariff_id is not None and k % 7 == 0:
                account.cycle_start, account.cycle_wh = dt.date(today.year, 1, 1), 2_759_000
            register = 1_000_000
            for end, wh in ((peak_end, 1_500 + 37 * k), (valley_end, 2_100 + 11 * k)):
                post_consumption(s, meter, account, wh, interval=f"{register}:{register + wh}",
                                 start_at=end - dt.timedelta(hours=1), end_at=end)
                post_accrued(s, meter, account)
                register += wh


def share_this_month(engine, buildings: dict[str, int]) -> None:
    today = local_day(utcnow())
    with transaction(engine) as s:
        for k, building_id in enumerate(sorted(buildings.values())):
            post_shares(s, s.get(Building, building_id), day_start(today - ONE_DAY),
                        day_start(today), energy_wh=30_000 + 7_777 * k)


def console_login(web_client: httpx.Client, name: str) -> str:
    """`web_client` logged in to the console as `name`; returns its CSRF token."""
    web_client.get("/manage/login")
    token = web_client.cookies.get("csrftoken")
    reply = web_client.post("/manage/login", data={"name": name, "password": PASSWORD,
                                                   "csrftoken": token})
    assert reply.status_code == 303, reply.text
    return token


def money_this_month(engine, settings, base_url, providers, web, numbers) -> list[str]:
    """Payments (both channels), refunds, adjustments and an emergency advance repaid."""
    paid = []
    everyone = [n for building in numbers.values() for n in building]
    with transaction(engine) as s:  # 应急用电 for the first household of 2号楼, repaid below
        account = s.exec(select(Account).where(Account.number == numbers["2号楼"][0])).one()
        account.emergency_credit_fen = 2_000
        take_emergency_credit(s, account)
    for k, number in enumerate([numbers["2号楼"][0]] + everyone[1::17]):
        paid.append(pay(web, providers, ("alipay", "wechat")[k % 2], number,
                        yuan=str(30 + 10 * (k % 4))))
    for number in everyone[1::17][:3]:
        refund_balance(engine, providers, settings, RefundRequest(number, 1_000 + 123, "decision",
                                                                  "王经理"))
    with httpx.Client(base_url=base_url, follow_redirects=False, timeout=10) as admin:
        token = console_login(admin, "admin")
        for number, direction in ((numbers["3号楼"][5], "credit"),
                                  (numbers["1号楼"][9], "debit")):
            reply = admin.post(f"/manage/accounts/{number}/adjust", data={
                "direction": direction, "amount": "12.34", "reason": "电表更换补偿",
                "csrftoken": token})
            assert reply.status_code == 303, reply.text
    return paid


def wait_refunds(engine) -> None:
    from app.orders.models import REFUND_SUCCEEDED, Refund
    from tests.conftest import wait_until

    def settled():
        with transaction(engine, read_only=True) as s:
            return all(r.status == REFUND_SUCCEEDED for r in s.exec(select(Refund)))
    wait_until(settled, message="the refunds did not succeed")


@pytest.fixture
def month(engine, settings, stack, providers, web) -> Month:  # noqa: F811
    estate_id, buildings, numbers = import_estate(engine)
    everyone = [n for building in numbers.values() for n in building]
    this = month_of(local_day(utcnow()))
    last_month(engine, everyone, this)
    charge_this_month(engine, everyone)
    share_this_month(engine, buildings)
    paid = money_this_month(engine, settings, stack.base_url, providers, web, numbers)
    wait_refunds(engine)
    with transaction(engine, read_only=True) as s:
        days = sorted({local_day(o.paid_at) for o in s.exec(select(Order).where(
            Order.status == PAID))})
    for day in days:
        for report in reconcile_day(engine, providers, day):
            assert report.error == "", report.error
    return Month(estate_id, buildings, numbers, this, days[-1], paid)


# --- reading what was exported -------------------------------------------------------------------

def sheet_rows(data: bytes, title: str | None = None) -> tuple[list[str], list[list]]:
    """A workbook's sheet (the first, or `title`) as its header and its rows."""
    book = load_workbook(io.BytesIO(data))
    ws = book[title] if title else book.worksheets[0]
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    return [str(h) for h in rows[0]], rows[1:]


def fen(value) -> int:
    """A money cell back to integer fen: openpyxl reads the cell's decimal text "-12.34" as a
    float; its shortest repr is that text again, so Decimal(repr) is exact."""
    from decimal import Decimal

    exact = Decimal(repr(value)) * 100
    assert exact == exact.to_integral_value(), value
    return int(exact)


def wh(value) -> int:
    from decimal import Decimal

    exact = Decimal(repr(value)) * 1000
    assert exact == exact.to_integral_value(), value
    return int(exact)

