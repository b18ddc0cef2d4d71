"""Top-up orders: creating them, and crediting a verified payment exactly once."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, select

from app.commands.services import restore_if_allowed
from app.db import utcnow
from app.estate.models import Account
from app.ledger.models import TOPUP
from app.ledger.services import balance_fen, post_entry
from app.notices.models import PAYMENT_RECEIVED, Notice
from app.orders.models import PAID, PENDING, Order, RefusedNotification
from payments.base import Notification

MIN_TOPUP_FEN = 100  # 1 元
MAX_TOPUP_FEN = 500_000  # 5,000 元 per order

CREDITED = "credited"
DUPLICATE = "duplicate"
NOT_PAID = "not_paid"
REFUND_NOTICE = "refund_notice"


class Refused(Exception):
    """A notification that verified but does not match what we sold: kept for a person."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Confirmation:
    outcome: str
    order: Order | None = None


def new_out_trade_no() -> str:
    return "FK" + utcnow().strftime("%Y%m%d%H%M%S") + secrets.token_hex(5).upper()


def create_order(session: Session, account: Account, amount_fen: int, channel: str) -> Order:
    """A pending order for a top-up of `amount_fen` on `account`. Moves no money."""
    if not MIN_TOPUP_FEN <= amount_fen <= MAX_TOPUP_FEN:
        raise ValueError(f"amount must be between {MIN_TOPUP_FEN} and {MAX_TOPUP_FEN} fen")
    order = Order(out_trade_no=new_out_trade_no(), account_id=account.id,
                  amount_fen=amount_fen, channel=channel)
    session.add(order)
    session.flush()
    return order


def confirm_paid(session: Session, notification: Notification, *, app_id: str,
                 mchid: str | None = None) -> Confirmation:
    """Credit a verified payment notification, exactly once per order.

    Checks that the notification names our merchant id (`mchid`, WeChat Pay's
    `raw["mchid"]`; None for Alipay, which has none) and our app id, a known order of the same
    channel, and the order's exact amount; raises `Refused` otherwise (the caller rolls back,
    records the refusal and answers the provider with its failure reply). On the order's single
    transition pending → paid, in the caller's transaction: the top-up ledger entry, a notice,
    and a restore command when the new balance allows. A duplicate or a refund notice changes
    nothing. WeChat's refund notices carry no appid: there the mchid alone says they are ours.
    """
    if mchid is not None and notification.raw.get("mchid") != mchid:
        raise Refused("wrong_mchid", f"mchid {notification.raw.get('mchid')!r} is not ours")
    wechat_refund = mchid is not None and notification.is_refund and not notification.app_id
    if notification.app_id != app_id and not wechat_refund:
        raise Refused("wrong_app_id", f"app id {notification.app_id!r} is not ours")
    order = session.exec(
        select(Order).where(Order.out_trade_no == notification.out_trade_no)
    ).first()
    if order is None:
        raise Refused("unknown_order", f"no order {notification.out_trade_no!r}")
    if order.channel != notification.channel:
        raise Refused("wrong_channel", f"order was opened for {order.channel}")
    if notification.amount_fen != order.amount_fen:
        raise Refused("amount_mismatch",
                      f"paid {notification.amount_fen} fen, order is {order.amount_fen} fen")
    if notification.is_refund:
        return Confirmation(REFUND_NOTICE, order)
    if not notification.paid:
        return Confirmation(NOT_PAID, order)

    now = utcnow()
    moved = session.execute(
        update(Order)
        .where(Order.id == order.id, Order.status == PENDING)
        .values(status=PAID, paid_at=now, provider_trade_no=notification.provider_trade_no)
    ).rowcount
    if moved != 1:
        return Confirmation(DUPLICATE, order)

    post_entry(session, account_id=order.account_id, amount_fen=order.amount_fen, kind=TOPUP,
               idempotency_key=f"order:{order.out_trade_no}",
               memo=f"{notification.channel} {notification.provider_trade_no}")
    session.add(Notice(account_id=order.account_id, kind=PAYMENT_RECEIVED,
                       amount_fen=order.amount_fen))
    account = session.get(Account, order.account_id)
    restore_if_allowed(session, account, balance_fen(session, account.id),
                       reason=f"payment {order.out_trade_no}")
    return Confirmation(CREDITED, order)


def record_refused(session: Session, *, channel: str, reason: str, detail: str,
                   out_trade_no: str = "", payload: dict | str = "") -> RefusedNotification:
    if isinstance(payload, dict):
        payload = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    row = RefusedNotification(channel=channel, reason=reason, detail=detail[:500],
                              out_trade_no=out_trade_no[:64], payload=payload[:8000])
    session.add(row)
    return row
