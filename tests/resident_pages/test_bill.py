"""A month's bill (/a/<户号>/bills/<YYYY-MM>): its totals are the ledger's to the fen, each line
is what the ledger says (charges by price step and time-of-use period, the common-area share and
how it was apportioned, payments, a refund named 退款, an adjustment, an emergency advance and
its repayment), the same before and after the days are frozen."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.billing.pricing import accrue_lines, describe_accrued, price_consumption
from app.billing.shares import _households, _share_rows, _weights
from app.db import transaction
from app.estate.freeze import freeze_due_days
from app.estate.models import Account, Building, ShareRun
from app.ledger.models import (ADJUSTMENT, CHARGE, EMERGENCY_CREDIT, OPENING, REFUND, SHARE,
                               TOPUP)
from app.ledger.models import LedgerEntry as L
from app.money import E7, e7_to_fen, energy_cost
from app.tariffs.store import add_tariff, tariff_versions
from tests.factories import EstateFactory
from tests.resident_pages.helpers import (account_id, ledger_sum, local, month_start, post,
                                          resident, rows_of, sign_in, text_of, yuan)

EXAMPLES = Path(__file__).resolve().parent.parent / "tariffs" / "examples"
HOUR = dt.timedelta(hours=1)
# The hours charged: across the month's start, across 08:00 (valley → peak) and the tier bound,
# across the month's end (its last hour is posted in December).
HOURS = ([local(2025, 10, 31, 22) + k * HOUR for k in range(4)]
         + [local(2025, 11, 10, 5) + k * HOUR for k in range(6)]
         + [local(2025, 11, 30, 21) + k * HOUR for k in range(4)])
BY_TIME_HOUR = local(2025, 11, 10, 6)  # the meter gave no usable period registers


class Household:
    """One household on 浙江 tiered + time-of-use, 1.2 kWh below its yearly tier bound, and a
    neighbour in the same building (for the share); their ledgers from October to December."""

    def __init__(self, engine):
        estate = EstateFactory(engine)
        gw = estate.gateway("127.0.0.1", 1)
        with transaction(engine) as s:
            tariff = add_tariff(s, "浙江居民阶梯分时", (EXAMPLES / "zhejiang_tiered_tou.json")
                                .read_text(), dt.date(2020, 1, 1))
            tariff_id = tariff.id
        self.number = estate.account(gateway_id=gw, unit_id=1, tariff_id=tariff_id,
                                     cycle_start=dt.date(2025, 1, 1), cycle_wh=2_758_800,
                                     created_at=local(2025, 10, 1))
        self.neighbour = estate.account(gateway_id=gw, unit_id=2, floor_area_m2=Decimal("60.5"),
                                        created_at=local(2025, 10, 1))
        self.id, self.building_id = account_id(engine, self.number), estate.building_id
        self.engine = engine
        self.expected_lines: dict[tuple, int] = {}  # (tier, period, price) → Wh, November's
        self.november_charges_fen = self.november_wh = 0
        self.share_fen = 0

    def write(self) -> None:
        a = self.id
        post(self.engine, local(2025, 10, 15, 9), [(a, 10_000, OPENING, f"opening:{a}",
                                                     "开户余额", None)])
        self.charges()
        self.share()
        post(self.engine, local(2025, 11, 5, 20), [
            (a, 3_000, EMERGENCY_CREDIT, f"emergency:{a}:2025-11",
             "应急用电 30.00 元 (2025-11); repaid from the next top-up", None)])
        post(self.engine, local(2025, 11, 20, 10), [
            (a, 5_000, TOPUP, "order:FK20251120", "alipay 2025112022001", None),
            (a, -2_000, EMERGENCY_CREDIT, "emergency_repay:order:FK20251120",
             "应急用电 repaid 20.00 元 from the top-up", None)])
        post(self.engine, local(2025, 11, 22, 15), [
            (a, -2_000, REFUND, "refund:RF20251122", "alipay refund of FK20251120 (decision)",
             None)])
        post(self.engine, local(2025, 11, 25, 16), [
            (a, 150, ADJUSTMENT, "adjustment:1:ab", "调整 王经理: 电表更换补偿", None)])
        post(self.engine, local(2025, 12, 3, 9), [  # the advance's rest repaid in December
            (a, 2_000, TOPUP, "order:FK20251203", "wechat 4200001", None),
            (a, -1_000, EMERGENCY_CREDIT, "emergency_repay:order:FK20251203",
             "应急用电 repaid 10.00 元 from the top-up", None)])

    def charges(self) -> None:
        """An entry per hour as the worker posts them: priced by the tariff (per-period
        registers, or by time), the fen the one rounding rule gives, posted a minute after."""
        with transaction(self.engine, read_only=True) as s:
            account = s.get(Account, self.id)
            versions = tariff_versions(s, account.tariff_id)
        cycle_start, cycle_wh, exact_e7, posted, register = (
            account.cycle_start, account.cycle_wh, 0, 0, 1_000_000)
        for i, start in enumerate(HOURS):
            wh = 400 + 10 * i
            peak = 8 <= (start.hour + 8) % 24 < 22
            deltas = None if start == BY_TIME_HOUR else ((0, wh, 0, 0) if peak else (0, 0, 0, wh))
            priced = price_consumption(versions, start_at=start, end_at=start + HOUR,
                                       energy_wh=wh, cycle_start=cycle_start, cycle_wh=cycle_wh,
                                       uplift=False, period_deltas_wh=deltas)
            cycle_start, cycle_wh = priced.cycle_start, priced.cycle_wh
            exact_e7 += int(priced.quote.exact_yuan * E7)
            fen = e7_to_fen(exact_e7) - posted
            posted += fen
            at = start + HOUR + dt.timedelta(minutes=1)
            post(self.engine, at, [(self.id, -fen, CHARGE,
                                    f"charge:1:{register}:{register + wh}",
                                    describe_accrued(accrue_lines(None, priced)), wh)])
            register += wh
            if month_start(2025, 11) <= at < month_start(2025, 12):
                self.november_charges_fen -= fen
                self.november_wh += wh
                for line in priced.quote.lines:
                    key = (line.tier, line.period, line.price_yuan_per_kwh)
                    self.expected_lines[key] = self.expected_lines.get(key, 0) + line.energy_wh

    def share(self) -> None:
        """The building's common area of 10 November, shared by area, as the billing jobs
        write it: its run, and each household's entry (the shares module's own rows)."""
        start, end = local(2025, 11, 10), local(2025, 11, 11)
        with transaction(self.engine) as s:
            building = s.get(Building, self.building_id)
            exact = energy_cost(50_000, building.common_price_yuan_per_kwh)
            homes = _households(s, [building.id], start, end)[building.id]
            scheme, weights = _weights("area", homes, start, end, {})
            run = ShareRun(building_id=building.id, period_start=start, period_end=end,
                           scheme=scheme, energy_wh=50_000, exact_e7=int(exact * E7),
                           charge_fen=e7_to_fen(int(exact * E7)), households=len(homes))
            s.add(run)
            s.flush()
            rows = _share_rows(building, "2025-11-10", run, homes, scheme, weights)
            self.run_fen = run.charge_fen
        post(self.engine, end + dt.timedelta(minutes=12), rows)
        self.share_fen = next(-row[1] for row in rows if row[0] == self.id)


@pytest.fixture
def household(engine):
    h = Household(engine)
    h.write()
    return h


def _bill(client, number: str, month: str) -> str:
    response = client.get(f"/a/{number}/bills/{month}")
    assert response.status_code == 200, response.text[:500]
    return response.text


def check_november(html: str, h: Household, engine) -> None:
    opening = ledger_sum(engine, h.id, before=month_start(2025, 11))
    closing = ledger_sum(engine, h.id, before=month_start(2025, 12))
    moved = ledger_sum(engine, h.id, since=month_start(2025, 11), before=month_start(2025, 12))
    assert closing - opening == moved
    assert text_of(html, "opening") == yuan(opening)
    assert text_of(html, "closing") == yuan(closing)
    assert f"本月收支 {'+' if moved > 0 else ''}{yuan(moved)} 元" in text_of(html, "check")
    # every total is the ledger's, kind by kind
    def kind_sum(kind):
        with transaction(engine, read_only=True) as s:
            return int(s.execute(sa.select(sa.func.coalesce(sa.func.sum(L.amount_fen), 0)).where(
                L.account_id == h.id, L.kind == kind, L.created_at >= month_start(2025, 11),
                L.created_at < month_start(2025, 12))).scalar())
    for element, kind in (("sum-payments", TOPUP), ("sum-charges", CHARGE),
                          ("sum-shares", SHARE), ("sum-refunds", REFUND),
                          ("sum-adjustments", ADJUSTMENT), ("sum-emergency", EMERGENCY_CREDIT)):
        fen = kind_sum(kind)
        assert text_of(html, element) == ("+" if fen > 0 else "") + yuan(fen), element
    assert kind_sum(CHARGE) == h.november_charges_fen
    # own energy, line by line: price step, period, kWh, price; fen adding up to the charges
    lines = rows_of(html, "energy-lines")
    expected = sorted(h.expected_lines.items(),
                      key=lambda kv: (kv[0][0], {"peak": 1, "valley": 3}[kv[0][1]]))
    assert [(r[0], r[1], r[2], r[3]) for r in lines] == [
        (f"第 {tier} 档", period, f"{wh // 1000}.{wh % 1000:03d}", str(price))
        for (tier, period, price), wh in expected]
    assert {r[0] for r in lines} == {"第 1 档", "第 2 档"} and {r[1] for r in lines} == {
        "peak", "valley"}
    fens = [round(Decimal(r[4]) * 100) for r in lines]
    assert sum(fens) == -h.november_charges_fen
    for fen, ((_, _, price), wh) in zip(fens, expected):
        assert abs(fen - wh * price / 10) <= 2  # each line its exact amount, to a fen or two
    assert f"{h.november_wh // 1000}.{h.november_wh % 1000:03d} kWh" in html
    assert "部分电量的时段按时间比例分摊" in html  # the hour without period registers
    # the share and how it was apportioned
    assert "按面积" in html and "本楼公共用电</dt><dd>50.000 kWh" in html
    assert f"{yuan(h.run_fen)} 元 · 2 户" in html
    assert "本户面积</dt><dd>89.5 m²" in html
    assert f'class="share-fen">{yuan(h.share_fen)} 元' in html
    assert text_of(html, "sum-shares") == yuan(-h.share_fen)
    # payments, refunds (退款, never 调整), adjustments, the advance and its repayment
    assert rows_of(html, "payments") == [["11-20 10:00", "充值 · 支付宝", "+50.00"]]
    assert rows_of(html, "refunds") == [["11-22 15:00", "退款 · 支付宝", "-20.00"]]
    assert rows_of(html, "adjustments") == [["11-25 16:00", "调整：电表更换补偿", "+1.50"]]
    assert rows_of(html, "emergency") == [["11-05 20:00", "应急用电（预支）", "+30.00"],
                                          ["11-20 10:00", "应急用电还款", "-20.00"]]
    assert "王经理" not in html  # the manager's name is not the resident's business


def test_november_bill_is_the_ledger_to_the_fen(client, settings, engine, household):
    sign_in(client, settings, resident(engine, "13900000001", household.number))
    html = _bill(client, household.number, "2025-11")
    assert "2025 年 11 月电费账单" in html and "<h1" in html
    assert "打印 / 下载 PDF" in html and "portal.css" in html
    check_november(html, household, engine)
    # December opens where November closed, with 10 元 of the advance still outstanding then
    december = _bill(client, household.number, "2025-12")
    assert text_of(december, "opening") == text_of(html, "closing")
    assert text_of(december, "opening") == yuan(
        ledger_sum(engine, household.id, before=month_start(2025, 12)))
    assert rows_of(december, "emergency") == [["12-03 09:00", "应急用电还款", "-10.00"]]
    # October: the opening balance and the charges before the month's end
    october = _bill(client, household.number, "2025-10")
    assert text_of(october, "opening") == "0.00"
    assert rows_of(october, "openings") == [["10-15 09:00", "开户余额", "+100.00"]]
    assert text_of(october, "closing") == text_of(html, "opening")
    # the list of months: the three, newest first, each with its charges and shares
    listed = client.get(f"/a/{household.number}/bills").text
    november_billed = -(household.november_charges_fen - household.share_fen)
    assert listed.index("2025 年 12 月") < listed.index("2025 年 11 月") < listed.index(
        "2025 年 10 月")
    row = re.search(rf'href="/a/{household.number}/bills/2025-11">2025 年 11 月</a></th>\s*'
                    r'<td class="num">([-0-9.]+)</td>', listed)
    assert row and row[1] == yuan(november_billed)
    # frozen (账日冻结: the days read from ledger_day), every figure is the same
    while freeze_due_days(engine, now=local(2025, 12, 15, 1)):
        pass
    frozen = _bill(client, household.number, "2025-11")
    check_november(frozen, household, engine)
    assert text_of(frozen, "check") == text_of(html, "check")
    assert _bill(client, household.number, "2025-12").split('id="check"')[1][:200] == \
        december.split('id="check"')[1][:200]
    assert client.get(f"/a/{household.number}/bills").text.split("<tbody>")[1] == \
        listed.split("<tbody>")[1]


def test_a_month_with_nothing_and_months_that_are_not(client, settings, engine, household):
    sign_in(client, settings, resident(engine, "13900000002", household.number))
    empty = _bill(client, household.number, "2025-06")
    assert text_of(empty, "opening") == "0.00" and text_of(empty, "closing") == "0.00"
    assert "本月没有电费" in empty
    for month in ("2025-13", "2025-1", "abcd-ef", "2025-11-01", "9999-01"):
        response = client.get(f"/a/{household.number}/bills/{month}")
        assert response.status_code == 404 and "未找到该户号" in response.text, month
