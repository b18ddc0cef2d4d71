"""What waits for a property manager, and the two decisions they take on it.

Waiting: a warning when the official holiday calendar ends within 60 days (load next year's
arrangement: `feikong holidays load`), the open anomalies (meters offline, commands that expired, energy not charged), the
payments that came after their order was closed (neither credited nor refunded yet), and the
notifications we refused lately. `feikong review` prints them; the manager console will render
the same lists. Deciding: an anomaly is resolved with who decided and why; a late payment is
credited (`app.orders.services.credit_late_payment`) or refunded (`feikong refund`).
Nothing here shows a resident's name or phone: a 户号 and a household are enough to act on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, select

from app.anomalies.models import Anomaly
from app.db import utcnow
from app.estate.models import Account
from app.orders.models import PAID_AFTER_CLOSE, Order, RefusedCount, RefusedNotification
from app.orders.services import LATE_PAYMENT
from app.policy.arrangements import calendar_status
from app.tariffs import CHINA_TZ


@dataclass(frozen=True)
class OpenAnomaly:
    id: int
    created_at: dt.datetime
    kind: str
    account_number: str  # "" when the anomaly names no account
    household: str
    meter_id: int | None
    energy_wh: int | None  # energy not charged because of it
    detail: str


@dataclass(frozen=True)
class LatePayment:
    out_trade_no: str
    account_number: str
    household: str
    channel: str
    amount_fen: int
    provider_trade_no: str
    closed_at: dt.datetime | None


@dataclass(frozen=True)
class Refused:
    """One group of refused notifications: a channel and reason, how many since the review's
    start, the last one's time, and a kept sample (its order number and detail)."""

    channel: str
    reason: str
    count: int
    last_at: dt.datetime
    out_trade_no: str
    detail: str


@dataclass(frozen=True)
class Review:
    anomalies: list[OpenAnomaly]
    late_payments: list[LatePayment]
    refused: list[Refused]
    refused_since: dt.datetime
    calendar_warning: str | None = None  # the holiday calendar ends soon (app/policy/arrangements)


def review(session: Session, *, refused_days: int = 7, now: dt.datetime | None = None) -> Review:
    """Everything waiting for a manager: open anomalies (oldest first), payments after close,
    and the notifications refused in the last `refused_days` days (newest first; payments after
    close are listed once, as late payments)."""
    now = now or utcnow()
    since = now - dt.timedelta(days=refused_days)
    status = calendar_status(session, now.astimezone(CHINA_TZ).date())
    anomalies = [
        OpenAnomaly(a.id, a.created_at, a.kind, number or "", household or "", a.meter_id,
                    a.energy_wh, a.detail)
        for a, number, household in session.exec(
            select(Anomaly, Account.number, Account.household)
            .join(Account, Account.id == Anomaly.account_id, isouter=True)
            .where(Anomaly.resolved_at.is_(None))
            .order_by(Anomaly.created_at, Anomaly.id))]
    late = [
        LatePayment(o.out_trade_no, number, household, o.channel, o.amount_fen,
                    o.provider_trade_no, o.closed_at)
        for o, number, household in session.exec(
            select(Order, Account.number, Account.household)
            .join(Account, Account.id == Order.account_id)
            .where(Order.status == PAID_AFTER_CLOSE)
            .order_by(Order.closed_at, Order.id))]
    refused = []
    for channel, reason, count, last_at in session.execute(
            select(RefusedCount.channel, RefusedCount.reason, func.sum(RefusedCount.count),
                   func.max(RefusedCount.last_at))
            .where(RefusedCount.hour >= since.replace(minute=0, second=0, microsecond=0),
                   RefusedCount.reason != LATE_PAYMENT)
            .group_by(RefusedCount.channel, RefusedCount.reason)
            .order_by(func.sum(RefusedCount.count).desc(), RefusedCount.channel,
                      RefusedCount.reason)):
        sample = session.exec(
            select(RefusedNotification)
            .where(RefusedNotification.channel == channel, RefusedNotification.reason == reason)
            .order_by(RefusedNotification.received_at.desc(), RefusedNotification.id.desc())
            .limit(1)).first()
        refused.append(Refused(channel, reason, int(count), last_at,
                               sample.out_trade_no if sample else "",
                               sample.detail if sample else ""))
    return Review(anomalies, late, refused, since,
                  status.warning if status is not None else None)


def resolve_anomaly(session: Session, anomaly_id: int, *, by: str, note: str) -> Anomaly:
    """Close an anomaly with who decided and what (kept on it). ValueError, changing nothing,
    for an unknown or already resolved anomaly, or without a name and a note."""
    by, note = by.strip(), note.strip()
    if not by or not note:
        raise ValueError("say who resolves it (--by) and what was done (--note)")
    anomaly = session.get(Anomaly, anomaly_id, with_for_update=True)
    if anomaly is None:
        raise ValueError(f"no anomaly {anomaly_id}")
    if anomaly.resolved_at is not None:
        raise ValueError(f"anomaly {anomaly_id} was resolved already: {anomaly.resolution}")
    anomaly.resolved_at = utcnow()
    anomaly.resolution = f"{by}: {note}"[:500]
    session.add(anomaly)
    return anomaly


def format_review(r: Review) -> str:
    """The lists as plain text, times in Beijing time (the CLI's)."""
    parts = [f"节假日日历 holiday calendar: {r.calendar_warning}", ""] if r.calendar_warning else []
    parts += [f"待处理异常 open anomalies: {len(r.anomalies)}"]
    parts += [_line(str(a.id), _beijing(a.created_at), a.kind, _who(a.account_number, a.household),
                    f"meter {a.meter_id}" if a.meter_id is not None else "-",
                    f"{a.energy_wh / 1000:.3f} kWh not charged" if a.energy_wh else "-",
                    a.detail)
              for a in r.anomalies]
    parts += ["", "关单后付款 payments after close, to credit or refund: "
                  f"{len(r.late_payments)}"]
    parts += [_line(p.out_trade_no, _who(p.account_number, p.household), p.channel,
                    f"{p.amount_fen / 100:.2f} 元", p.provider_trade_no,
                    f"closed {_beijing(p.closed_at)}" if p.closed_at else "-")
              for p in r.late_payments]
    parts += ["", f"拒收的通知 refused notifications since {_beijing(r.refused_since)}: "
                  f"{sum(f.count for f in r.refused)}"]
    parts += [_line(f"{f.count} ×", f.channel, f.reason, f"last {_beijing(f.last_at)}",
                    f.out_trade_no or "-", f.detail)
              for f in r.refused]
    return "\n".join(parts)


def _who(number: str, household: str) -> str:
    return f"{number} ({household})" if number else "-"


def _beijing(moment: dt.datetime) -> str:
    return moment.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")


def _line(*cells: str) -> str:
    return "  " + "  ".join(cells)
