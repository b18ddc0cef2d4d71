"""Payments (缴费) of a local day or month by channel, as the reconciliation (对账,
app/orders/reconcile.py) counts them: a payment is a paid order (`pay_order.status` paid) of the
Beijing day of its `paid_at`, a refund a succeeded refund of the day of its `confirmed_at`, each
in its channel. So a day's payments less refunds, per channel, are what that channel's bill of
the day says when the reconciliation matched every line (`reconcile_run.bill_amount_fen`, its
`lines` the payments and refunds counted); the sheet puts the two side by side.

The reconciliation is per merchant account, not per estate or building: its figures are shown
only to the roles that see the whole estate (estate administrators, finance), and equal ours
when the merchant account serves this one estate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import Session

from app.estate.models import Account, Building
from app.ledger.days import ONE_DAY, day_start, local_day
from app.orders.models import PAID, REFUND_SUCCEEDED, Order, ReconcileRun, Refund

CHANNEL_ZH = {"alipay": "支付宝", "wechat": "微信支付"}


@dataclass
class ChannelDay:
    """One channel's payments and refunds of one local day, fen; and its reconciliation run
    (None: not reconciled, or not shown)."""

    day: dt.date
    channel: str
    payments: int = 0
    paid_fen: int = 0
    refunds: int = 0
    refunded_fen: int = 0
    run: ReconcileRun | None = None

    @property
    def net_fen(self) -> int:
        return self.paid_fen - self.refunded_fen


@dataclass
class Payments:
    days: list[ChannelDay] = field(default_factory=list)
    lines: list[tuple] = field(default_factory=list)  # (at, kind, channel, number, building,
    #                                                    household, out_no, provider_no, fen)


def period_days(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return day_start(first), day_start(last + ONE_DAY)


def payments(session: Session, building_ids: Sequence[int], first: dt.date, last: dt.date,
             *, with_reconciliation: bool) -> Payments:
    """The paid orders and succeeded refunds of the buildings' accounts in the local days
    [first, last], line by line (time order) and summed per day and channel."""
    start, end = period_days(first, last)
    ids = list(building_ids) or [-1]
    out = Payments()
    by_key: dict[tuple[dt.date, str], ChannelDay] = {}
    paid = session.execute(
        sa.select(Order.paid_at, Order.channel, Account.number, Building.name, Account.household,
                  Order.out_trade_no, Order.provider_trade_no, Order.amount_fen)
        .join(Account, Account.id == Order.account_id)
        .join(Building, Building.id == Account.building_id)
        .where(Account.building_id.in_(ids), Order.status == PAID, Order.paid_at >= start,
               Order.paid_at < end))
    refunded = session.execute(
        sa.select(Refund.confirmed_at, Refund.channel, Account.number, Building.name,
                  Account.household, Refund.out_refund_no, Refund.provider_refund_no,
                  Refund.amount_fen)
        .join(Account, Account.id == Refund.account_id)
        .join(Building, Building.id == Account.building_id)
        .where(Account.building_id.in_(ids), Refund.status == REFUND_SUCCEEDED,
               Refund.confirmed_at >= start, Refund.confirmed_at < end))
    for kind, rows in (("payment", paid), ("refund", refunded)):
        for at, channel, number, building, household, out_no, provider_no, fen in rows:
            day = local_day(at)
            entry = by_key.setdefault((day, channel), ChannelDay(day, channel))
            if kind == "payment":
                entry.payments += 1
                entry.paid_fen += fen
            else:
                entry.refunds += 1
                entry.refunded_fen += fen
            out.lines.append((at, kind, channel, number, building, household, out_no,
                              provider_no, fen if kind == "payment" else -fen))
    if with_reconciliation:
        for run in session.execute(sa.select(ReconcileRun).where(
                ReconcileRun.bill_date >= first, ReconcileRun.bill_date <= last)).scalars():
            by_key.setdefault((run.bill_date, run.channel),
                              ChannelDay(run.bill_date, run.channel)).run = run
    out.days = [by_key[k] for k in sorted(by_key)]
    out.lines.sort(key=lambda line: (line[0], line[6]))
    return out
