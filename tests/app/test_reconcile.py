"""Reconciliation (对账) against the stand-ins' real-format bills (Alipay: a zip of GBK CSV files
behind a 30-second URL; WeChat Pay: a gzip CSV checked against its SHA1), one day with one
planted difference of each kind."""

import datetime as dt

import pytest
from sqlmodel import func, select

from app.cli import main as feikong
from app.db import transaction
from app.orders.jobs import query_pending, reconcile_if_due
from app.orders.models import (AMOUNT_MISMATCH, CREDIT_WITHOUT_BILL, FEE_MISMATCH,
                               MISSING_CREDIT, ReconcileDifference, ReconcileRun, Refund)
from app.orders.reconcile import BEIJING, list_differences, reconcile_day
from app.orders.refunds import RefundRequest, refund_balance
from payments.bills import BillOverride
from tests.app.test_orders_jobs import (CHANNELS, later, pay, providers,  # noqa: F401
                                        web)
from tests.conftest import wait_until

TODAY = dt.datetime.now(BEIJING).date


def plant(providers, channel: str, out_trade_no: str, **override) -> None:
    standin = providers.alipay_standin if channel == "alipay" else providers.wechat_standin
    standin.bill_overrides[out_trade_no] = BillOverride(**override)


def a_day_with_one_difference_of_each_kind(web, providers, settings, engine, number, channel):
    """Five payments and a refund today; returns {kind: out_trade_no} of what was planted."""
    matched = pay(web, providers, channel, number)
    never_notified = pay(web, providers, channel, number, notify="never")
    left_out = pay(web, providers, channel, number)
    other_amount = pay(web, providers, channel, number)
    other_fee = pay(web, providers, channel, number)
    plant(providers, channel, left_out, omit=True)
    plant(providers, channel, other_amount, amount_fen=4999)
    plant(providers, channel, other_fee, fee_fen=50)  # 0.50 元 where 0.6 % of 50 元 is 0.30
    [refund] = refund_balance(engine, providers, settings,
                              RefundRequest(number, 500, "decision", "王经理"))
    wait_until(lambda: _status(engine, refund.out_refund_no) == "succeeded")
    assert matched
    return {MISSING_CREDIT: never_notified, CREDIT_WITHOUT_BILL: left_out,
            AMOUNT_MISMATCH: other_amount, FEE_MISMATCH: other_fee}


def _status(engine, out_refund_no):
    with transaction(engine, read_only=True) as s:
        return s.exec(select(Refund.status).where(Refund.out_refund_no == out_refund_no)).one()


@pytest.mark.parametrize("channel", CHANNELS)
def test_each_planted_difference_is_found_once(web, providers, settings, engine, cut_account,
                                               channel):
    planted = a_day_with_one_difference_of_each_kind(web, providers, settings, engine,
                                                     cut_account, channel)

    [report] = reconcile_day(engine, providers, TODAY(), (channel,))
    again = reconcile_day(engine, providers, TODAY(), (channel,))  # a second run adds nothing

    assert report.error == "" and report.lines == 5  # four payments billed, one refund
    assert report.matched == 2  # the untouched payment and the refund
    found = {d.kind: d.out_trade_no for d in report.differences}
    assert found == planted
    assert [d.id for d in again[0].differences] == [d.id for d in report.differences]
    by_kind = {d.kind: d for d in report.differences}
    assert (by_kind[AMOUNT_MISMATCH].our_amount_fen,
            by_kind[AMOUNT_MISMATCH].bill_amount_fen) == (5000, 4999)
    assert (by_kind[FEE_MISMATCH].expected_fee_e5, by_kind[FEE_MISMATCH].bill_fee_e5) == (
        30_000, 50_000)
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(func.count()).select_from(ReconcileDifference)).one() == 4
        run = s.exec(select(ReconcileRun)).one()
    assert (run.channel, run.lines, run.differences) == (channel, 5, 4)


def test_a_lost_payment_credited_by_query_since_is_resolved_by_the_next_run(
        web, providers, engine, cut_account):
    no = pay(web, providers, "alipay", cut_account, notify="never")
    [first] = reconcile_day(engine, providers, TODAY(), ("alipay",))
    assert [(d.kind, d.out_trade_no) for d in first.differences] == [(MISSING_CREDIT, no)]

    query_pending(engine, providers, now=later(3))  # the order jobs find it paid and credit it
    [second] = reconcile_day(engine, providers, TODAY(), ("alipay",))

    assert second.matched == 1
    [diff] = second.differences
    assert (diff.kind, diff.resolved_by) == (MISSING_CREDIT, "reconcile")
    with transaction(engine, read_only=True) as s:
        assert list_differences(s, unresolved_only=True) == []


def test_feikong_reconcile_prints_the_differences(web, providers, settings, engine,
                                                  cut_account, capsys):
    no = pay(web, providers, "wechat", cut_account)
    plant(providers, "wechat", no, amount_fen=1)

    assert feikong(["reconcile", "--date", TODAY().isoformat(), "--channel", "wechat"]) == 0

    out = capsys.readouterr().out
    assert f"wechat {TODAY()}: 1 lines, 0 matched, 1 differences" in out
    assert AMOUNT_MISMATCH in out and no in out


def test_yesterday_is_reconciled_once_a_day_after_ten(web, providers, engine, cut_account):
    pay(web, providers, "alipay", cut_account)
    tomorrow = dt.datetime.combine(TODAY() + dt.timedelta(days=1), dt.time(), BEIJING)

    assert reconcile_if_due(engine, providers, now=tomorrow + dt.timedelta(hours=9)) == []
    reports = reconcile_if_due(engine, providers, now=tomorrow + dt.timedelta(hours=10))
    assert [(r.channel, r.bill_date, r.lines, r.differences) for r in reports] == [
        ("alipay", TODAY(), 1, []), ("wechat", TODAY(), 0, [])]
    assert reconcile_if_due(engine, providers, now=tomorrow + dt.timedelta(hours=11)) == []
