"""Refunds: a manager gives (part of) a resident's unspent balance back, through the provider
that took it, on account closure or by decision.

A refund is money leaving the ledger, so it is a ledger entry: posted (negative, kind refund)
in the transaction that records the refund, before the provider is asked, so that the money
cannot be spent meanwhile. The provider's refund notice, or a query of the refund, confirms it
(`settle_refund`: requested/submitted → succeeded); a provider that refuses it gets a second
entry giving the money back (→ failed). Providers refund per paid order: the amount is split over
the account's paid orders, newest first, each within what is left of it and within the
provider's refund window.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import func, update
from sqlmodel import Session, select

from app import logs
from app.db import transaction, utcnow
from app.estate.models import Account
from app.ledger.models import REFUND
from app.ledger.services import balance_fen, post_entry
from app.orders.models import (ACCOUNT_CLOSURE, PAID, REFUND_FAILED, REFUND_REASONS,
                               REFUND_REQUESTED, REFUND_SUBMITTED, REFUND_SUCCEEDED, Order,
                               Refund)
from app.orders.providers import NOTIFY_PATHS
from app.orders.services import record_refused
from payments import base as pay
from payments.base import Notification, ProviderError

log = logging.getLogger(__name__)

# How long after a payment each provider still refunds it (Alipay: three months by default;
# WeChat Pay: one year).
REFUND_WINDOW_DAYS = {"alipay": 90, "wechat": 365}
# Errors after which the same refund is simply asked again later (same out_refund_no: it
# refunds once): no reply, the provider's own trouble, a merchant balance too low for now.
RETRYABLE = frozenset({
    "NETWORK", "HTTP_ERROR", "ERROR_RESPONSE", "MALFORMED_REPLY", "BAD_RESPONSE_SIGNATURE",
    "SDK_ERROR", "SYSTEM_ERROR", "NOT_ENOUGH", "FREQUENCY_LIMITED", "ACQ.SYSTEM_ERROR",
    "ACQ.SELLER_BALANCE_NOT_ENOUGH", "aop.ACQ.SYSTEM_ERROR",
})
# What settle_refund did.
CONFIRMED = "confirmed"
FAILED = "failed"
SUBMITTED = "submitted"
UNCHANGED = "unchanged"
UNKNOWN_REFUND = "unknown_refund"


class RefundRefused(ValueError):
    """A refund that cannot be made as asked; nothing was recorded."""


@dataclass(frozen=True)
class RefundRequest:
    """What a manager asks: `amount_fen` of the account's balance (None: all of it)."""

    account_number: str
    amount_fen: int | None
    reason: str
    requested_by: str
    note: str = ""


def new_out_refund_no() -> str:
    return "RF" + utcnow().strftime("%Y%m%d%H%M%S") + secrets.token_hex(5).upper()


def request_refund(session: Session, ask: RefundRequest, *, channels: tuple[str, ...],
                   now: dt.datetime | None = None) -> list[Refund]:
    """Record the refunds that give `ask.amount_fen` back, in the caller's transaction: one
    Refund per paid order drawn on, and its negative ledger entry. Moves no money at a provider
    (`submit_refund` does). Raises RefundRefused when the amount is not positive, is more than
    the unspent balance, or more than can go back through `channels` (the rest must be paid out
    another way: the message says how much could)."""
    if ask.reason not in REFUND_REASONS:
        raise RefundRefused(f"reason must be one of {', '.join(REFUND_REASONS)}")
    if not ask.requested_by.strip():
        raise RefundRefused("say who asks for the refund")
    now = now or utcnow()
    account = session.exec(select(Account).where(Account.number == ask.account_number)
                           .with_for_update()).first()  # one refund of an account at a time
    if account is None:
        raise RefundRefused(f"no account {ask.account_number!r}")
    balance = balance_fen(session, account.id)
    amount = balance if ask.amount_fen is None else ask.amount_fen
    if type(amount) is not int or amount <= 0:
        raise RefundRefused(f"nothing to refund: the balance is {balance} fen"
                            if ask.amount_fen is None else "the amount must be positive fen")
    if amount > balance:
        raise RefundRefused(f"{amount} fen is more than the unspent balance, {balance} fen")
    plan = _draw_on_orders(session, account.id, amount, channels, now)
    drawn = sum(piece for _order, piece in plan)
    if drawn < amount:
        raise RefundRefused(f"only {drawn} fen can go back through the providers' refunds "
                            f"(paid orders within their refund window); pay out the other "
                            f"{amount - drawn} fen another way")
    refunds = []
    for order, piece in plan:
        refund = Refund(out_refund_no=new_out_refund_no(), order_id=order.id,
                        account_id=account.id, channel=order.channel, amount_fen=piece,
                        reason=ask.reason, note=ask.note[:500], requested_by=ask.requested_by,
                        created_at=now)
        session.add(refund)
        post_entry(session, account_id=account.id, amount_fen=-piece, kind=REFUND,
                   idempotency_key=f"refund:{refund.out_refund_no}",
                   memo=f"{order.channel} refund of {order.out_trade_no} ({ask.reason})")
        refunds.append(refund)
    session.flush()
    return refunds


def _draw_on_orders(session: Session, account_id: int, amount_fen: int,
                    channels: tuple[str, ...], now: dt.datetime) -> list[tuple[Order, int]]:
    orders = session.exec(
        select(Order).where(Order.account_id == account_id, Order.status == PAID,
                            Order.channel.in_(channels))
        .order_by(Order.paid_at.desc(), Order.id.desc())
    ).all()
    taken = dict(session.exec(
        select(Refund.order_id, func.sum(Refund.amount_fen))
        .where(Refund.account_id == account_id, Refund.status != REFUND_FAILED)
        .group_by(Refund.order_id)
    ).all())
    plan, left = [], amount_fen
    for order in orders:
        window = dt.timedelta(days=REFUND_WINDOW_DAYS.get(order.channel, 0))
        if left == 0 or order.paid_at is None or order.paid_at < now - window:
            continue
        piece = min(left, order.amount_fen - int(taken.get(order.id) or 0))
        if piece > 0:
            plan.append((order, piece))
            left -= piece
    return plan


@logs.binding("refund", "out_refund_no")
def submit_refund(engine, providers, settings, out_refund_no: str) -> str:
    """Ask the provider for a recorded refund (again, if need be: the same out_refund_no refunds
    once). Its reply moves requested → submitted; a refusal → failed, with the money given back
    to the balance; no reply, or the provider's own trouble, leaves it to be asked again by the
    order jobs. Returns what settle_refund did, or UNCHANGED."""
    with transaction(engine, read_only=True) as session:
        refund = session.exec(select(Refund).where(Refund.out_refund_no == out_refund_no)).one()
        order = session.get(Order, refund.order_id)
    if refund.status != REFUND_REQUESTED:
        return UNCHANGED
    provider = providers.by_channel(refund.channel)
    try:
        result = provider.refund(order.out_trade_no, refund.out_refund_no, refund.amount_fen,
                                 order.amount_fen, reason=_reason_text(refund),
                                 notify_url=settings.base_url + NOTIFY_PATHS[refund.channel])
    except ProviderError as exc:
        retry = exc.code in RETRYABLE or exc.status == 0 or exc.status >= 500
        log.warning("refund %s: %s%s", out_refund_no, exc, " (will retry)" if retry else "")
        with transaction(engine) as session:
            _note(session, out_refund_no, f"{exc.code}: {exc.message}"[:500])
            if retry:
                return UNCHANGED
            return settle_refund(session, out_refund_no, pay.REFUND_FAILED)
    with transaction(engine) as session:
        # A reply is "accepted", never the confirmation: the notice or a query confirms.
        status = pay.REFUND_FAILED if result.status == pay.REFUND_FAILED else pay.REFUND_PROCESSING
        return settle_refund(session, out_refund_no, status,
                             provider_refund_no=result.provider_refund_no)


def _reason_text(refund: Refund) -> str:
    return "账户销户退款" if refund.reason == ACCOUNT_CLOSURE else "电费余额退款"


def _note(session: Session, out_refund_no: str, detail: str) -> None:
    session.execute(update(Refund).where(Refund.out_refund_no == out_refund_no)
                    .values(detail=detail, attempts=Refund.attempts + 1))


def settle_refund(session: Session, out_refund_no: str, status: str, *,
                  provider_refund_no: str = "") -> str:
    """Move a refund on what the provider says (`status`, one of payments.base.REFUND_*), in
    the caller's transaction, each transition once: processing → submitted (from requested);
    succeeded → succeeded (from requested or submitted); failed → failed, and the debit given
    back by a second entry. Returns SUBMITTED, CONFIRMED, FAILED, UNCHANGED or
    UNKNOWN_REFUND."""
    refund = session.exec(select(Refund).where(Refund.out_refund_no == out_refund_no)).first()
    if refund is None:
        return UNKNOWN_REFUND
    now = utcnow()
    extra = {"provider_refund_no": provider_refund_no} if provider_refund_no else {}
    if status == pay.REFUND_PROCESSING:
        moved = _move(session, refund, (REFUND_REQUESTED,), REFUND_SUBMITTED,
                      submitted_at=now, attempts=Refund.attempts + 1, **extra)
        return SUBMITTED if moved else UNCHANGED
    if status == pay.REFUND_SUCCEEDED:
        moved = _move(session, refund, (REFUND_REQUESTED, REFUND_SUBMITTED), REFUND_SUCCEEDED,
                      confirmed_at=now, **extra)
        return CONFIRMED if moved else UNCHANGED
    if status == pay.REFUND_FAILED:
        if not _move(session, refund, (REFUND_REQUESTED, REFUND_SUBMITTED), REFUND_FAILED,
                     confirmed_at=now, **extra):
            return UNCHANGED
        post_entry(session, account_id=refund.account_id, amount_fen=refund.amount_fen,
                   kind=REFUND, idempotency_key=f"refund-failed:{out_refund_no}",
                   memo=f"{refund.channel} refund {out_refund_no} refused: given back")
        return FAILED
    return UNCHANGED


def _move(session: Session, refund: Refund, old: tuple[str, ...], new: str, **values) -> bool:
    return session.execute(
        update(Refund).where(Refund.id == refund.id, Refund.status.in_(old))
        .values(status=new, **values)
    ).rowcount == 1


def settle_refund_notice(session: Session, notification: Notification, order: Order) -> str:
    """A verified refund notice of `order` (its ids and amount checked by confirm_paid): settle
    the refund it names. A notice of a refund we never asked for (made at the merchant's own
    console, say) is kept for a person: our ledger does not show it."""
    refund = session.exec(select(Refund).where(
        Refund.out_refund_no == notification.out_refund_no)).first()
    if refund is None or refund.order_id != order.id:
        record_refused(session, channel=notification.channel, reason=UNKNOWN_REFUND,
                       detail=f"refund {notification.out_refund_no!r} of {order.out_trade_no} "
                              f"({notification.refund_fen} fen) is not one of ours",
                       out_trade_no=order.out_trade_no, payload=notification.raw)
        return UNKNOWN_REFUND
    if not notification.refund_status:
        return UNCHANGED
    return settle_refund(session, refund.out_refund_no, notification.refund_status)


@logs.binding("refund", "out_refund_no")
def check_refund(engine, providers, out_refund_no: str) -> str:
    """Ask the provider where a submitted refund stands and settle it on the answer. A refund
    the provider does not know is asked for again (`submit_refund` of a requested one)."""
    with transaction(engine, read_only=True) as session:
        refund = session.exec(select(Refund).where(Refund.out_refund_no == out_refund_no)).one()
        order = session.get(Order, refund.order_id)
    try:
        result = providers.by_channel(refund.channel).query_refund(order.out_trade_no,
                                                                   out_refund_no)
    except ProviderError as exc:
        log.warning("refund %s: query failed: %s", out_refund_no, exc)
        return UNCHANGED
    with transaction(engine) as session:
        if result is None:
            session.execute(update(Refund).where(Refund.id == refund.id,
                                                 Refund.status == REFUND_SUBMITTED)
                            .values(status=REFUND_REQUESTED))
            return UNCHANGED
        return settle_refund(session, out_refund_no, result.status,
                             provider_refund_no=result.provider_refund_no)


def refund_balance(engine, providers, settings, ask: RefundRequest) -> list[Refund]:
    """What the manager console (and `feikong refund`) calls: record the refunds in one
    transaction, then ask the providers for each. Returns the refunds as they stand then
    (submitted, or succeeded already if a notice was quicker; failed if refused). Raises
    RefundRefused, with nothing recorded."""
    with transaction(engine) as session:
        out_refund_nos = [r.out_refund_no for r in request_refund(
            session, ask, channels=providers.channels)]
    for out_refund_no in out_refund_nos:
        submit_refund(engine, providers, settings, out_refund_no)
    with transaction(engine, read_only=True) as session:
        return list(session.exec(select(Refund).where(Refund.out_refund_no.in_(out_refund_nos))
                                 .order_by(Refund.id)))
