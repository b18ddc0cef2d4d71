"""The order jobs: what happens when a provider's notification never comes.

Plain functions, each one sweep, safe to run again and from several processes at once (each
order moves once, each refund too; a provider answers the same question the same way):
- `query_pending`: an order still pending a while after the resident went to the cashier is
  queried at the provider, then again at growing intervals; a paid result credits through the
  same `confirm_paid` as a notification.
- `close_expired`: a pending order past its life is queried one last time, then closed at the
  provider and here (pending → closed), so it can no longer be paid. A notification that still
  comes is kept for a manager (see `confirm_paid`).
- `check_refunds`: refunds the provider has not accepted are asked for again; accepted ones
  whose notice did not come are queried.
- `reconcile_if_due`: yesterday's bills, once both are out (10:00 Beijing time), each day.
`run_order_jobs` runs them all in a loop: `run_order_jobs(engine, settings, providers)`.
Provider calls block (HTTP; in the sandbox, to this very server): the loop runs each sweep in a
thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import or_, text, update
from sqlmodel import select

from app import logs
from app.db import is_postgres, transaction, utcnow
from app.orders.models import (CLOSED, PENDING, REFUND_REQUESTED, REFUND_SUBMITTED, Order,
                               Refund)
from app.jobs.runs import ORDER_JOBS, record_run
from app.orders.reconcile import BEIJING, reconcile_day, reconciled, yesterday_in_beijing
from app.orders.refunds import check_refund, submit_refund
from app.orders.services import (CREDITED, ORDER_LIFE, Refused, confirm_paid, our_ids,
                                 record_refused)
from payments.base import ProviderError

log = logging.getLogger(__name__)

QUERY_AFTER_S = 120.0  # the resident is usually back from the cashier within two minutes
QUERY_BACKOFF_S = (120.0, 180.0, 300.0, 600.0)  # then asked again after these (the last repeats)
ORDER_LIFE_S = ORDER_LIFE.total_seconds()  # then closed (the provider refuses payment by then)
REFUND_QUERY_AFTER_S = 60.0  # a submitted refund whose notice has not come by then is queried
REFUND_RETRY_AFTER_S = 30.0  # a refund the provider has not accepted is asked again
RECONCILE_AT = dt.time(10, 0)  # Beijing: Alipay's bill is out by 09:00, WeChat's by 10:00
RECONCILE_RETRY = dt.timedelta(hours=1)  # after a bill could not be had
SWEEP_EVERY_S = 30.0
BATCH = 200
ADVISORY_LOCK_KEY = 0x46_4B_4F_52  # "FKOR": one sweeping process at a time on PostgreSQL

# What happened to an order.
NOT_PAID = "not_paid"
CLOSED_NOW = "closed"
ERROR = "error"
GONE = "gone"  # no longer pending, or its channel is not offered by this process


@dataclass
class SweepReport:
    queried: Counter = field(default_factory=Counter)
    closed: Counter = field(default_factory=Counter)
    refunds: Counter = field(default_factory=Counter)
    reconciled: list = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.queried or self.closed or self.refunds or self.reconciled)


def query_pending(engine, providers, *, now: dt.datetime | None = None,
                  query_after_s: float = QUERY_AFTER_S, life_s: float = ORDER_LIFE_S,
                  limit: int = BATCH) -> Counter:
    """Query every pending order due for it: older than `query_after_s`, not past its life,
    and not asked within its back-off. Returns how many ended each way (CREDITED, NOT_PAID,
    ERROR, …)."""
    now = now or utcnow()
    with transaction(engine, read_only=True) as session:
        due = session.exec(
            select(Order.out_trade_no, Order.query_count, Order.queried_at)
            .where(Order.status == PENDING, Order.channel.in_(providers.channels),
                   Order.created_at <= now - dt.timedelta(seconds=query_after_s),
                   Order.created_at > now - dt.timedelta(seconds=life_s))
            .order_by(Order.created_at).limit(limit * 4)
        ).all()
    outcomes = Counter()
    for out_trade_no, count, queried_at in due:
        backoff = QUERY_BACKOFF_S[min(count, len(QUERY_BACKOFF_S) - 1)]
        if queried_at is not None and queried_at > now - dt.timedelta(seconds=backoff):
            continue
        outcomes[query_order(engine, providers, out_trade_no, now=now)] += 1
        if sum(outcomes.values()) >= limit:
            break
    return outcomes


@logs.binding("order", "out_trade_no")
def query_order(engine, providers, out_trade_no: str, *, now: dt.datetime | None = None) -> str:
    """Ask the order's provider about it; credit it through `confirm_paid` if it was paid.
    Returns CREDITED, "duplicate", NOT_PAID, ERROR or GONE."""
    now = now or utcnow()
    order, provider = _order_and_provider(engine, providers, out_trade_no)
    if provider is None:
        return GONE
    try:
        result = provider.query(out_trade_no)
    except ProviderError as exc:
        log.warning("query %s at %s failed: %s", out_trade_no, order.channel, exc)
        result, outcome = None, ERROR
    else:
        outcome = NOT_PAID
    try:
        with transaction(engine) as session:
            session.execute(update(Order).where(Order.id == order.id).values(
                queried_at=now, query_count=Order.query_count + 1,
                **({"unpaid_at": now} if result is not None and not result.paid else {})))
            if result is not None and result.paid:
                outcome = confirm_paid(session, result, **our_ids(provider)).outcome
    except Refused as exc:  # the provider's own answer does not match what we sold
        with transaction(engine) as session:
            record_refused(session, channel=order.channel, reason=exc.reason,
                           detail=f"query: {exc.detail}", out_trade_no=out_trade_no,
                           payload=result.raw)
        return ERROR
    if outcome == CREDITED:
        log.info("order %s: no notification came; paid by query, credited", out_trade_no)
    return outcome


def _order_and_provider(engine, providers, out_trade_no: str):
    with transaction(engine, read_only=True) as session:
        order = session.exec(select(Order).where(Order.out_trade_no == out_trade_no)).one()
    try:
        return order, providers.by_channel(order.channel)
    except KeyError:
        return order, None


def close_expired(engine, providers, *, now: dt.datetime | None = None,
                  life_s: float = ORDER_LIFE_S, limit: int = BATCH) -> Counter:
    """Close every pending order past its life (see `close_order`)."""
    now = now or utcnow()
    with transaction(engine, read_only=True) as session:
        expired = session.exec(
            select(Order.out_trade_no).where(
                Order.status == PENDING, Order.channel.in_(providers.channels),
                Order.created_at <= now - dt.timedelta(seconds=life_s))
            .order_by(Order.created_at).limit(limit)
        ).all()
    return Counter(close_order(engine, providers, no, now=now) for no in expired)


@logs.binding("order", "out_trade_no")
def close_order(engine, providers, out_trade_no: str, *, now: dt.datetime | None = None) -> str:
    """Query the order one last time (paid: credited, as by `query_order`); otherwise close it
    at the provider, then here: pending → closed. If the provider will not close it (paid
    meanwhile, say), query again; an order left pending is tried at the next sweep.
    Returns CREDITED, CLOSED_NOW, NOT_PAID, ERROR or GONE."""
    now = now or utcnow()
    outcome = query_order(engine, providers, out_trade_no, now=now)
    if outcome != NOT_PAID:
        return outcome
    order, provider = _order_and_provider(engine, providers, out_trade_no)
    try:
        provider.close(out_trade_no)
    except ProviderError as exc:
        log.warning("close %s at %s refused: %s; querying again", out_trade_no, order.channel, exc)
        again = query_order(engine, providers, out_trade_no, now=now)
        return again if again != NOT_PAID else ERROR
    with transaction(engine) as session:
        moved = session.execute(update(Order).where(Order.id == order.id,
                                                    Order.status == PENDING)
                                .values(status=CLOSED, closed_at=now)).rowcount
    return CLOSED_NOW if moved else GONE


def check_refunds(engine, providers, settings, *, now: dt.datetime | None = None,
                  limit: int = BATCH) -> Counter:
    """Ask again for refunds the provider has not accepted, and query accepted ones whose
    notice has not come."""
    now = now or utcnow()
    with transaction(engine, read_only=True) as session:
        due = session.exec(select(Refund.out_refund_no, Refund.status).where(
            Refund.channel.in_(providers.channels), or_(
                (Refund.status == REFUND_REQUESTED)
                & (Refund.created_at <= now - dt.timedelta(seconds=REFUND_RETRY_AFTER_S)),
                (Refund.status == REFUND_SUBMITTED)
                & (Refund.submitted_at <= now - dt.timedelta(seconds=REFUND_QUERY_AFTER_S)),
            )).order_by(Refund.id).limit(limit)).all()
    outcomes = Counter()
    for out_refund_no, status in due:
        if status == REFUND_REQUESTED:
            outcomes[submit_refund(engine, providers, settings, out_refund_no)] += 1
        else:
            outcomes[check_refund(engine, providers, out_refund_no)] += 1
    return outcomes


def reconcile_if_due(engine, providers, *, now: dt.datetime | None = None) -> list:
    """Reconcile yesterday (Beijing) for each channel not reconciled yet, from 10:00 on; a
    channel whose bill could not be had is tried again an hour later."""
    now = now or utcnow()
    if now.astimezone(BEIJING).time() < RECONCILE_AT:
        return []
    bill_date = yesterday_in_beijing(now)
    key = (str(engine.url), bill_date)
    with transaction(engine, read_only=True) as session:
        due = tuple(c for c in providers.channels if not reconciled(session, bill_date, c)
                    and _failed_at.get(key + (c,), now - RECONCILE_RETRY) <= now - RECONCILE_RETRY)
    reports = reconcile_day(engine, providers, bill_date, due) if due else []
    for report in reports:
        if report.error:
            _failed_at[key + (report.channel,)] = now
    return reports


_failed_at: dict[tuple, dt.datetime] = {}  # (database, bill date, channel) → last failed attempt


def sweep(engine, providers, settings, *, now: dt.datetime | None = None,
          reconcile: bool = True) -> SweepReport:
    """One round of every job, in this thread."""
    now = now or utcnow()
    report = SweepReport()
    report.queried = query_pending(engine, providers, now=now)
    report.closed = close_expired(engine, providers, now=now)
    report.refunds = check_refunds(engine, providers, settings, now=now)
    if reconcile:
        report.reconciled = reconcile_if_due(engine, providers, now=now)
    return report


def sweep_if_first(engine, providers, settings) -> SweepReport | None:
    """`sweep`, unless another process is sweeping the same PostgreSQL database right now
    (a session advisory lock); on SQLite, always (one process runs the jobs there)."""
    if not is_postgres(engine):
        return sweep(engine, providers, settings)
    with engine.connect() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                            {"k": ADVISORY_LOCK_KEY}).scalar():
            return None
        conn.commit()
        try:
            return sweep(engine, providers, settings)
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
            conn.commit()


async def run_order_jobs(engine, settings, providers, *, every_s: float = SWEEP_EVERY_S) -> None:
    """Sweep every `every_s` seconds until cancelled. A failing sweep is logged and the next
    one comes all the same. `providers` must be the web app's own (`app.state.providers`):
    in the sandbox, the stand-ins' records live in it."""
    while True:
        failed = None
        try:
            report = await asyncio.to_thread(sweep_if_first, engine, providers, settings)
            if report:
                log.info("order jobs: queried %s, closed %s, refunds %s, reconciled %s",
                         dict(report.queried), dict(report.closed), dict(report.refunds),
                         [(r.channel, str(r.bill_date), len(r.differences), r.error)
                          for r in report.reconciled])
        except Exception as exc:
            failed = exc
            log.exception("order jobs: the sweep failed")
        try:  # for /readyz: the jobs are alive, and how the last sweep went
            await asyncio.to_thread(record_run, engine, ORDER_JOBS, failed)
        except Exception:
            log.warning("order jobs: their run could not be recorded", exc_info=True)
        await asyncio.sleep(every_s)
