"""Reconciliation (对账): each provider's trade bill of a day, matched line by line with our
orders and refunds; every difference kept for a manager.

A payment line is matched with our order by out_trade_no, whenever we credited it: a payment
a minute before midnight and its notification a minute after stay one match. Then:
- the bill has a payment we did not credit (order pending, closed, paid after close, or not
  ours at all): MISSING_CREDIT;
- both have it with different amounts: AMOUNT_MISMATCH;
- the provider's fee is not its rate of the billed amount, beyond half a fen (what rounding to
  the fen explains): FEE_MISMATCH;
- we credited a payment (paid_at in the day, Beijing time) that no bill line matched, on this
  day or an earlier one: CREDIT_WITHOUT_BILL.
Refund lines likewise, by out_refund_no: REFUND_NOT_CONFIRMED, AMOUNT_MISMATCH,
REFUND_WITHOUT_BILL. A difference a later run of the same day no longer finds is marked
resolved. Nothing here moves money or changes an order's status: a manager decides.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.db import transaction, utcnow
from app.orders.models import (AMOUNT_MISMATCH, CREDIT_WITHOUT_BILL, FEE_MISMATCH,
                               MISSING_CREDIT, PAID, REFUND_NOT_CONFIRMED, REFUND_SUCCEEDED,
                               REFUND_WITHOUT_BILL, Order, ReconcileDifference, ReconcileRun,
                               Refund)
from payments.base import BILL_PAYMENT, BILL_REFUND, BillLine, ProviderError

log = logging.getLogger(__name__)

BEIJING = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")  # the providers' bill days
# The fee each provider takes of a payment (the merchant's contract; 0.6 % is the common
# rate for both). A fee differing from rate × amount by more than half a fen is a difference.
FEE_RATES = {"alipay": Decimal("0.006"), "wechat": Decimal("0.006")}
FEE_TOLERANCE_E5 = 500
E5_PER_FEN = 1000


@dataclass
class DayReport:
    """One channel's reconciliation of one day."""

    channel: str
    bill_date: dt.date
    lines: int = 0
    matched: int = 0
    differences: list[ReconcileDifference] = field(default_factory=list)
    error: str = ""  # the bill could not be had: nothing was compared


def beijing_day(bill_date: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a Beijing calendar day, as aware UTC datetimes."""
    start = dt.datetime.combine(bill_date, dt.time(), BEIJING)
    return start.astimezone(dt.timezone.utc), (start + dt.timedelta(days=1)).astimezone(
        dt.timezone.utc)


def yesterday_in_beijing(now: dt.datetime | None = None) -> dt.date:
    return ((now or utcnow()).astimezone(BEIJING) - dt.timedelta(days=1)).date()


def expected_fee_e5(channel: str, amount_fen: int) -> int:
    """The provider's fee on `amount_fen` at its rate, exact in 1/100000 yuan."""
    return int(Decimal(amount_fen * E5_PER_FEN) * FEE_RATES.get(channel, Decimal(0)))


def compare(session: Session, channel: str, bill_date: dt.date,
            lines: list[BillLine]) -> tuple[list[ReconcileDifference], int]:
    """The differences between `lines` (one channel's bill of `bill_date`) and our books, and
    how many lines matched. Marks matched orders and refunds `reconciled_on`; stores nothing
    else. Read the module's docstring for the kinds."""
    diffs: list[ReconcileDifference] = []

    def differ(kind: str, line: BillLine | None, **values) -> None:
        if line is not None:
            values = dict(out_trade_no=line.out_trade_no, out_refund_no=line.out_refund_no,
                          provider_trade_no=line.provider_trade_no,
                          bill_amount_fen=line.amount_fen) | values
        diffs.append(ReconcileDifference(bill_date=bill_date, channel=channel, kind=kind,
                                         **values))

    payments = [line for line in lines if line.kind == BILL_PAYMENT]
    refund_lines = [line for line in lines if line.kind == BILL_REFUND]
    orders = {o.out_trade_no: o for o in _in_chunks(session, Order, Order.out_trade_no,
                                                    {line.out_trade_no for line in payments})}
    matched, seen = 0, Counter()
    for line in payments:
        seen[line.out_trade_no] += 1
        order = orders.get(line.out_trade_no)
        if order is None or order.channel != channel:
            differ(MISSING_CREDIT, line, detail="the bill has a payment of no order of ours")
            continue
        if seen[line.out_trade_no] > 1:
            differ(MISSING_CREDIT, line, our_amount_fen=order.amount_fen,
                   detail="the bill has this payment twice")
            continue
        _mark(session, Order, order.id, bill_date)  # billed: never a credit without a bill
        if order.status != PAID:
            differ(MISSING_CREDIT, line, our_amount_fen=order.amount_fen,
                   detail=f"our order is {order.status}: not credited")
            continue
        ok = True
        if line.amount_fen != order.amount_fen:
            ok = False
            differ(AMOUNT_MISMATCH, line, our_amount_fen=order.amount_fen,
                   detail=f"credited {order.amount_fen} fen, the bill says {line.amount_fen}")
        fee = expected_fee_e5(channel, line.amount_fen)  # of what was billed: an amount
        if abs(line.fee_e5 - fee) > FEE_TOLERANCE_E5:  # difference is reported as such
            ok = False
            rate = (FEE_RATES.get(channel, Decimal(0)) * 100).normalize()
            differ(FEE_MISMATCH, line, our_amount_fen=order.amount_fen, expected_fee_e5=fee,
                   bill_fee_e5=line.fee_e5,
                   detail=f"fee {line.fee_e5} (1/100000 yuan), {rate}% of the amount is {fee}")
        matched += ok

    start, end = beijing_day(bill_date)
    billed = {line.out_trade_no for line in payments}
    for order in session.exec(select(Order).where(
            Order.channel == channel, Order.status == PAID, Order.paid_at >= start,
            Order.paid_at < end, Order.reconciled_on.is_(None))):
        if order.out_trade_no not in billed:
            differ(CREDIT_WITHOUT_BILL, None, out_trade_no=order.out_trade_no,
                   provider_trade_no=order.provider_trade_no, our_amount_fen=order.amount_fen,
                   detail=f"credited at {order.paid_at:%Y-%m-%d %H:%M:%S} UTC; no bill line")

    wanted = {line.out_refund_no for line in refund_lines}
    refunds = {r.out_refund_no: r
               for r in _in_chunks(session, Refund, Refund.out_refund_no, wanted)}
    for line in refund_lines:
        refund = refunds.get(line.out_refund_no)
        if refund is None or refund.channel != channel or refund.status != REFUND_SUCCEEDED:
            differ(REFUND_NOT_CONFIRMED, line,
                   our_amount_fen=None if refund is None else refund.amount_fen,
                   detail="no refund of ours" if refund is None
                   else f"our refund is {refund.status}")
            continue
        _mark(session, Refund, refund.id, bill_date)
        if line.amount_fen != refund.amount_fen:
            differ(AMOUNT_MISMATCH, line, our_amount_fen=refund.amount_fen,
                   detail=f"refunded {refund.amount_fen} fen, the bill says {line.amount_fen}")
        else:
            matched += 1
    refunded = {line.out_refund_no for line in refund_lines}
    for refund in session.exec(select(Refund).where(
            Refund.channel == channel, Refund.status == REFUND_SUCCEEDED,
            Refund.confirmed_at >= start, Refund.confirmed_at < end,
            Refund.reconciled_on.is_(None))):
        if refund.out_refund_no not in refunded:
            order = session.get(Order, refund.order_id)
            differ(REFUND_WITHOUT_BILL, None, out_trade_no=order.out_trade_no,
                   out_refund_no=refund.out_refund_no, our_amount_fen=refund.amount_fen,
                   detail="confirmed refund; no bill line")
    return diffs, matched


def _in_chunks(session: Session, model, column, values: set[str], size: int = 500) -> list:
    values, found = sorted(values), []
    for i in range(0, len(values), size):
        found += session.exec(select(model).where(column.in_(values[i:i + size]))).all()
    return found


def _mark(session: Session, model, row_id: int, bill_date: dt.date) -> None:
    session.execute(update(model).where(model.id == row_id).values(reconciled_on=bill_date))


def reconcile_day(engine, providers, bill_date: dt.date,
                  channels: tuple[str, ...] | None = None) -> list[DayReport]:
    """Download each channel's bill of `bill_date`, compare it with our books and keep the
    differences (`reconcile_difference`, one row per difference however often the day is run)
    and the run (`reconcile_run`). A channel whose bill cannot be had is reported with its
    error and compared another time."""
    reports = []
    for channel in channels or providers.channels:
        report = DayReport(channel, bill_date)
        reports.append(report)
        try:
            lines = providers.by_channel(channel).bill_lines(bill_date)
        except ProviderError as exc:
            log.warning("reconcile %s %s: no bill: %s", channel, bill_date, exc)
            report.error = f"{exc.code}: {exc.message}"
            continue
        report.lines = len(lines)
        with transaction(engine) as session:
            found, report.matched = compare(session, channel, bill_date, lines)
            for diff in found:
                _keep(session, diff)
            _resolve_gone(session, channel, bill_date, found)
            _record_run(session, report, lines, len(found))
        with transaction(engine, read_only=True) as session:
            report.differences = list_differences(session, bill_date=bill_date, channel=channel)
    return reports


def _keep(session: Session, diff: ReconcileDifference) -> None:
    existing = session.exec(select(ReconcileDifference.id).where(
        ReconcileDifference.bill_date == diff.bill_date,
        ReconcileDifference.channel == diff.channel, ReconcileDifference.kind == diff.kind,
        ReconcileDifference.out_trade_no == diff.out_trade_no,
        ReconcileDifference.out_refund_no == diff.out_refund_no)).first()
    if existing is not None:
        return
    try:
        with session.begin_nested():
            session.add(diff)
    except IntegrityError:  # another run of the same day kept it meanwhile
        pass


def _resolve_gone(session: Session, channel: str, bill_date: dt.date,
                  found: list[ReconcileDifference]) -> None:
    """A difference of an earlier run that this run no longer finds (the lost payment was
    credited by query since, say) is marked resolved, by the reconciliation itself."""
    still = {(d.kind, d.out_trade_no, d.out_refund_no) for d in found}
    for diff in list_differences(session, bill_date=bill_date, channel=channel,
                                 unresolved_only=True):
        if (diff.kind, diff.out_trade_no, diff.out_refund_no) not in still:
            diff.resolved_at, diff.resolved_by = utcnow(), "reconcile"
            diff.resolution = "no longer found by a later run"
            session.add(diff)


def _record_run(session: Session, report: DayReport, lines: list[BillLine],
                differences: int) -> None:
    run = session.exec(select(ReconcileRun).where(ReconcileRun.bill_date == report.bill_date,
                                                  ReconcileRun.channel == report.channel)).first()
    run = run or ReconcileRun(bill_date=report.bill_date, channel=report.channel)
    run.lines, run.matched, run.differences = len(lines), report.matched, differences
    run.bill_amount_fen = sum(line.amount_fen if line.kind == BILL_PAYMENT else -line.amount_fen
                              for line in lines)
    run.bill_fee_e5 = sum(line.fee_e5 for line in lines)
    run.ran_at = utcnow()
    session.add(run)


def list_differences(session: Session, *, bill_date: dt.date | None = None,
                     channel: str | None = None,
                     unresolved_only: bool = False) -> list[ReconcileDifference]:
    """The differences for managers, oldest day first."""
    query = select(ReconcileDifference)
    if bill_date is not None:
        query = query.where(ReconcileDifference.bill_date == bill_date)
    if channel is not None:
        query = query.where(ReconcileDifference.channel == channel)
    if unresolved_only:
        query = query.where(ReconcileDifference.resolved_at.is_(None))
    return list(session.exec(query.order_by(ReconcileDifference.bill_date,
                                            ReconcileDifference.id)))


def reconciled(session: Session, bill_date: dt.date, channel: str) -> bool:
    return session.exec(select(ReconcileRun.id).where(
        ReconcileRun.bill_date == bill_date, ReconcileRun.channel == channel)).first() is not None


def format_table(differences: list[ReconcileDifference]) -> str:
    """The differences as a plain-text table (the CLI's; the console will render its own)."""
    header = ("date", "channel", "kind", "out_trade_no", "out_refund_no", "ours_fen",
              "bill_fen", "fee_e5 exp/bill", "detail")
    rows = [header] + [(
        str(d.bill_date), d.channel, d.kind, d.out_trade_no, d.out_refund_no or "-",
        _num(d.our_amount_fen), _num(d.bill_amount_fen),
        f"{_num(d.expected_fee_e5)}/{_num(d.bill_fee_e5)}"
        if d.expected_fee_e5 is not None or d.bill_fee_e5 is not None else "-",
        d.detail) for d in differences]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1]
                     for row in rows)


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)
