"""/manage/charts: the tables behind the charts hold exactly the figures of the ledger and the
meters' days (collection per day, the balance distribution, consumption per building and month),
before and after the days are frozen; a building manager sees her building's figures only and
another building's filter is a 404."""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa

from app.db import transaction, utcnow
from app.estate.freeze import freeze_due_days
from app.estate.models import Account, DailyFrozen
from app.ledger.days import day_start
from app.ledger.models import CHARGE, SHARE, TOPUP, LedgerEntry
from app.money import fen_to_yuan_str
from app.orders.models import CLOSED, PAID, Order
from app.orders.services import CREDITED, confirm_paid, create_order
from app.tariffs import CHINA_TZ
from payments.base import Notification
from tests.factories import account_by_number, meter_of


def table(page: str, table_id: str) -> dict[str, list[str]]:
    """The rows of the table `table_id`'s body, by their header cell: the other cells' text."""
    body = page.split(f'id="{table_id}"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        head = re.search(r"<th[^>]*>(.*?)</th>", row, re.S).group(1).strip()
        rows[head] = [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    return rows


def noon(day: dt.date) -> dt.datetime:
    return day_start(day) + dt.timedelta(hours=12)


def paid_order(s, account_id: int, fen: int, paid_at: dt.datetime,
               posted_at: dt.datetime | None = None) -> str:
    """A top-up paid at a past moment, as a payment notification leaves it
    (`app.orders.services._credit_many`): the order paid, and its `topup` entry keyed by it,
    posted in the same transaction a moment after `paid_at` (or at `posted_at`)."""
    number = f"FKCHART{paid_at:%Y%m%d%H%M%S%f}{account_id}"
    s.add(Order(out_trade_no=number, account_id=account_id, amount_fen=fen, channel="alipay",
                status=PAID, paid_at=paid_at, created_at=paid_at - dt.timedelta(minutes=1)))
    s.add(LedgerEntry(account_id=account_id, amount_fen=fen, kind=TOPUP,
                      idempotency_key=f"order:{number}", memo=f"alipay T{number}",
                      created_at=posted_at or paid_at + dt.timedelta(milliseconds=40)))
    return number


def seed(engine, estate) -> dt.date:
    """Top-ups, charges and shares on known local days; meters' days in known months. Returns
    today (local)."""
    today = utcnow().astimezone(CHINA_TZ).date()
    d3, d10, d1 = (today - dt.timedelta(days=n) for n in (3, 10, 1))
    a1, a2, _ = (account_by_number(engine, n).id for n in estate.a_accounts)
    b1 = account_by_number(engine, estate.b_accounts[0]).id
    entries = [(a1, 10_000, TOPUP, d3), (a1, -1_234, CHARGE, d3), (a1, -66, SHARE, d10),
               (a2, 2_000, TOPUP, d10), (a2, -500, CHARGE, d1), (b1, 50_000, TOPUP, d3),
               (b1, -700, CHARGE, d3)]
    this_month = today.replace(day=1)
    two_ago = ((this_month - dt.timedelta(days=1)).replace(day=1) - dt.timedelta(days=1)
               ).replace(day=1)
    too_old = (this_month - dt.timedelta(days=340)).replace(day=1) - dt.timedelta(days=1)
    meter_a = meter_of(engine, estate.a_accounts[0]).id
    meter_b = meter_of(engine, estate.b_accounts[0]).id
    days = [(meter_a, today, 12_345), (meter_a, two_ago, 1_000),
            (meter_a, two_ago + dt.timedelta(days=1), 1_001), (meter_a, too_old, 99_999),
            (meter_b, today, 7_000)]
    with transaction(engine) as s:
        for i, (account, fen, kind, day) in enumerate(entries):
            if kind == TOPUP:
                paid_order(s, account, fen, noon(day))
            else:
                s.add(LedgerEntry(account_id=account, amount_fen=fen, kind=kind,
                                  idempotency_key=f"chart:{i}", created_at=noon(day)))
        for meter, day, wh in days:
            s.add(DailyFrozen(meter_id=meter, day=day, opening_wh=0, register_wh=wh,
                              read_at=noon(day), used_wh=wh))
    return today


def test_the_tables_hold_the_ledgers_figures_in_scope(console, engine, estate):
    today = seed(engine, estate)
    client = console("b1")  # 1号楼 only
    page = client.get("/manage/charts")
    assert page.status_code == 200
    text = page.text
    assert text.count('role="img"') == 3  # collection, balances, 1号楼's consumption
    days = table(text, "collection-table")
    assert len(days) == 30
    assert days[str(today - dt.timedelta(days=3))] == ["100.00", "12.34"]
    assert days[str(today - dt.timedelta(days=10))] == ["20.00", "0.66"]
    assert days[str(today - dt.timedelta(days=1))] == ["0.00", "5.00"]
    assert days[str(today)] == ["0.00", "0.00"]
    assert str(today - dt.timedelta(days=30)) not in days
    # 1号楼: 5000+10000-1234-66 = 137.00 元, 300+2000-500 = 18.00 元, -5.00 元
    assert table(text, "balances-table") == {
        "&lt; 0": ["1"], "0–10": ["0"], "10–50": ["1"], "50–100": ["0"], "100–300": ["1"],
        "≥ 300": ["0"]}
    months = table(text, "consumption-table")
    assert len(months) == 12
    assert months[today.strftime("%Y-%m")] == ["12.345"]
    two_ago = (today.replace(day=1) - dt.timedelta(days=32)).replace(day=1)
    assert months[two_ago.strftime("%Y-%m")] == ["2.001"]
    others = [v for m, v in months.items()
              if m not in (today.strftime("%Y-%m"), two_ago.strftime("%Y-%m"))]
    assert others == [["0.000"]] * 10  # the 99,999 Wh of 12 months ago: too old
    assert "2号楼" not in text.split('id="consumption-table"')[1]

    assert client.get(f"/manage/charts?building={estate.building_b}").status_code == 404
    assert client.get("/manage/charts?building=x").status_code == 404
    assert client.get(f"/manage/charts?building={estate.building_a}").text.count(
        'role="img"') == 3

    admin = console("admin")
    whole = admin.get("/manage/charts").text
    assert table(whole, "collection-table")[str(today - dt.timedelta(days=3))] == [
        "600.00", "19.34"]
    assert table(whole, "balances-table")["&lt; 0"] == ["2"]  # 1号楼's -5 元, 2号楼's -2 元
    assert table(whole, "balances-table")["≥ 300"] == ["1"]  # -2 + 500 - 7 元
    assert table(whole, "consumption-table")[today.strftime("%Y-%m")] == ["12.345", "7.000"]
    only_b = admin.get(f"/manage/charts?building={estate.building_b}").text
    assert table(only_b, "collection-table")[str(today - dt.timedelta(days=3))] == [
        "500.00", "7.00"]
    assert table(only_b, "balances-table")["&lt; 0"] == ["1"]


def test_frozen_days_give_the_same_figures(console, engine, estate):
    today = seed(engine, estate)
    client = console("b1")
    before = table(client.get("/manage/charts").text, "collection-table")
    assert freeze_due_days(engine, limit=40)  # the ten days before today: from ledger_day now
    after = table(client.get("/manage/charts").text, "collection-table")
    assert after == before
    assert after[str(today - dt.timedelta(days=1))] == ["0.00", "5.00"]


def ledger_top_ups(engine, account_ids: set[int]) -> dict[str, str]:
    """The ledger's `topup` entries of the accounts summed by local day, straight from the
    ledger (no orders), in 元 as the table shows them."""
    found: dict[dt.date, int] = {}
    with transaction(engine, read_only=True) as s:
        for account_id, fen, at in s.execute(
                sa.select(LedgerEntry.account_id, LedgerEntry.amount_fen, LedgerEntry.created_at)
                .where(LedgerEntry.kind == TOPUP)):
            if account_id in account_ids:
                day = at.astimezone(CHINA_TZ).date()
                found[day] = found.get(day, 0) + fen
    return {str(day): fen_to_yuan_str(fen) for day, fen in found.items()}


def test_top_ups_are_the_ledgers_to_the_fen(console, engine, estate):
    """The top-ups column holds each day's `topup` entries of the ledger: a payment credited
    now by a notification; one paid at 23:59:59.9 whose entry was posted after midnight (the
    ledger's next day); not an order never paid, nor one closed, nor another building's."""
    today = seed(engine, estate)
    a1, a2, _ = (account_by_number(engine, n).id for n in estate.a_accounts)
    b1 = account_by_number(engine, estate.b_accounts[0]).id
    d5 = today - dt.timedelta(days=5)
    with transaction(engine) as s:
        order = create_order(s, s.get(Account, a2), 8_888, "alipay")
        paid = Notification("alipay", order.out_trade_no, 8_888, True, "T8888", "app", False,
                            raw={})
        assert confirm_paid(s, paid, app_id="app").outcome == CREDITED
        create_order(s, s.get(Account, a1), 5_000, "alipay")  # never paid
        create_order(s, s.get(Account, a1), 6_000, "alipay").status = CLOSED
        midnight = day_start(d5)
        paid_order(s, a1, 1_500, midnight - dt.timedelta(milliseconds=100),
                   posted_at=midnight + dt.timedelta(milliseconds=200))
        paid_order(s, b1, 7_700, noon(d5))
    days = table(console("b1").get("/manage/charts").text, "collection-table")
    ledger = ledger_top_ups(engine, {a1, a2})
    assert {day: cells[0] for day, cells in days.items()} == \
        {day: ledger.get(day, "0.00") for day in days}
    assert days[str(today)][0] == "88.88"
    assert days[str(d5)][0] == "15.00"  # the entry's day, as the ledger has it
    assert days[str(d5 - dt.timedelta(days=1))][0] == "0.00"
    whole = table(console("admin").get("/manage/charts").text, "collection-table")
    ledger = ledger_top_ups(engine, {a1, a2, b1})
    assert {day: cells[0] for day, cells in whole.items()} == \
        {day: ledger.get(day, "0.00") for day in whole}
    assert whole[str(d5)][0] == "92.00"  # and 2号楼's 77.00


def test_the_page_is_linked_and_needs_a_login(console, settings, engine, estate):
    from tests.console.conftest import new_client

    client = console("finance")
    assert 'href="/manage/charts"' in client.get("/manage/").text
    assert 'href="/manage/indicators"' in client.get("/manage/charts").text
    with new_client(settings, engine) as stranger:
        answer = stranger.get("/manage/charts")
        assert answer.status_code == 303 and "/manage/login" in answer.headers["location"]
