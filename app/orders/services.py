"""Top-up orders: creating them, and crediting a verified payment exactly once."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import bindparam, insert, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from app.billing.emergency import balances_advances_and_metered, repay_emergency_credit
from app.commands.services import restore_if_allowed
from app.db import UTCDateTime, utcnow
from app.estate.models import Account
from app.ledger.models import TOPUP
from app.ledger.services import lock_balances, post_entries
from app.notices.models import PAYMENT_RECEIVED, Notice
from app.orders.models import (CLOSED, PAID, PAID_AFTER_CLOSE, PENDING, REFUSED_SAMPLE, Order,
                               RefusedCount, RefusedNotification)
from payments.base import Notification, OrderInfo

MIN_TOPUP_FEN = 100  # 1 元
MAX_TOPUP_FEN = 500_000  # 5,000 元 per order
# An order's life: the provider is told to refuse payment after it (time_expire), and the order
# jobs close it here and at the provider then (app/orders/jobs.py).
ORDER_LIFE = dt.timedelta(minutes=30)

CREDITED = "credited"
DUPLICATE = "duplicate"
NOT_PAID = "not_paid"
REFUND_NOTICE = "refund_notice"
LATE_PAYMENT = "paid_after_close"  # paid after we closed it: kept for a manager, not credited


class Refused(Exception):
    """A notification that verified but does not match what we sold: kept for a person."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class AccountClosed(ValueError):
    """A top-up of a closed account: refused, no order made."""


@dataclass(frozen=True)
class Confirmation:
    outcome: str
    # the order, for the outcomes that need it after (a refund notice, not paid, a payment
    # after close); None for CREDITED and DUPLICATE, whose orders are not loaded as objects
    order: Order | None = None


def new_out_trade_no() -> str:
    return "FK" + utcnow().strftime("%Y%m%d%H%M%S") + secrets.token_hex(5).upper()


def create_order(session: Session, account: Account, amount_fen: int, channel: str) -> Order:
    """A pending order for a top-up of `amount_fen` on `account`. Moves no money. Raises
    AccountClosed for a closed account (销户: nothing can be paid onto it)."""
    if account.closed_at is not None:
        raise AccountClosed(f"account {account.number} is closed")
    if not MIN_TOPUP_FEN <= amount_fen <= MAX_TOPUP_FEN:
        raise ValueError(f"amount must be between {MIN_TOPUP_FEN} and {MAX_TOPUP_FEN} fen")
    order = Order(out_trade_no=new_out_trade_no(), account_id=account.id,
                  amount_fen=amount_fen, channel=channel)
    session.add(order)
    session.flush()
    return order


def order_info(order: Order, household: str) -> OrderInfo:
    """What the provider needs to start `order`, its expiry included."""
    return OrderInfo(order.out_trade_no, order.amount_fen, subject=f"电费充值 {household}",
                     expires_at=order.created_at + ORDER_LIFE)


def our_ids(provider) -> dict[str, str]:
    """The ids a notification must name to be ours: Alipay's app id; WeChat's appid and mchid
    (the keyword arguments `confirm_paid` takes)."""
    if provider.identifier == "wechat":
        return {"app_id": provider.appid, "mchid": provider.mchid}
    return {"app_id": provider.app_id}


def confirm_paid(session: Session, notification: Notification, *, app_id: str,
                 mchid: str | None = None) -> Confirmation:
    """Credit a verified payment notification, or a provider's paid query result, exactly once
    per order.

    Checks that the notification names our merchant id (`mchid`, WeChat Pay's
    `raw["mchid"]`; None for Alipay, which has none) and our app id, a known order of the same
    channel, and the order's exact amount; raises `Refused` otherwise, always before writing
    anything (the notify desk credits many notifications in one transaction and relies on it;
    it records the refusal and answers the provider with its failure reply). On the order's single
    transition pending → paid, in the caller's transaction: the top-up ledger entry, the
    repayment of an outstanding emergency advance, a notice, and a restore command when the new
    balance allows (see `_credit_many`). A duplicate or a refund notice changes nothing.
    WeChat's refund notices carry no appid: there the mchid alone says they are ours.

    A payment for an order we closed (past its life, closed at the provider) is not credited:
    on its single transition closed → paid_after_close a `refused_notification` row
    ("paid_after_close") is kept for a manager, who credits it (`credit_late_payment`) or has it
    refunded. The provider is acknowledged: the money is recorded, retrying changes nothing.
    """
    (result,) = confirm_many(session, [(notification, {"app_id": app_id, "mchid": mchid})])
    if isinstance(result, Refused):
        raise result
    return result


def confirm_many(session: Session, items: list[tuple[Notification, dict[str, str | None]]]
                 ) -> list[Confirmation | Refused]:
    """`confirm_paid` for many notifications in the caller's transaction, each with its ids
    (`our_ids`), as if one after another; each result in its place, a refusal as its `Refused`
    (having written nothing).

    Their orders are read at once and locked (`_lock_orders`, in out_trade_no order: on
    PostgreSQL no other transaction moves them until this one ends; on SQLite the writer holds
    the database). The first copy of a payment for a pending order of its channel and amount
    moves it pending → paid (one executemany for them all, each UPDATE still conditional on
    `pending`) and they are credited together (`_credit_many`); anything else (a repeat, a
    refund notice, a closed order, a mismatch, an unknown order) is sorted out after them, one
    by one, from what was read, and finds those orders paid."""
    results: list[Confirmation | Refused | None] = [None] * len(items)
    ours: list[int] = []
    for k, (notification, ids) in enumerate(items):
        try:
            _check_ours(notification, **ids)
        except Refused as exc:
            results[k] = exc
            continue
        ours.append(k)
    if not ours:
        return results
    orders = _lock_orders(session, {items[k][0].out_trade_no for k in ours})
    credits: list[tuple[_Paid, str]] = []
    moves: list[dict] = []
    for k in ours:
        notification = items[k][0]
        row = orders.get(notification.out_trade_no)
        if (notification.paid and not notification.is_refund and row is not None
                and row.status == PENDING and row.channel == notification.channel
                and row.amount_fen == notification.amount_fen):
            row.status = PAID  # a later copy in this batch finds it paid
            moves.append({"oid": row.id, "trade_no": notification.provider_trade_no})
            credits.append((_Paid(row.account_id, notification.out_trade_no,
                                  notification.amount_fen), _memo(notification)))
            results[k] = Confirmation(CREDITED)
    _pay_pending(session, moves)
    _credit_many(session, credits)
    for k in ours:
        if results[k] is None:
            notification = items[k][0]
            try:
                results[k] = _confirm_rest(session, notification,
                                           orders.get(notification.out_trade_no))
            except Refused as exc:
                results[k] = exc
    return results


def _check_ours(notification: Notification, *, app_id: str, mchid: str | None = None) -> None:
    if mchid is not None and notification.raw.get("mchid") != mchid:
        raise Refused("wrong_mchid", f"mchid {notification.raw.get('mchid')!r} is not ours")
    wechat_refund = mchid is not None and notification.is_refund and not notification.app_id
    if notification.app_id != app_id and not wechat_refund:
        raise Refused("wrong_app_id", f"app id {notification.app_id!r} is not ours")


def _memo(notification: Notification) -> str:
    return f"{notification.channel} {notification.provider_trade_no}"


def _confirm_rest(session: Session, notification: Notification,
                  row: _OrderRow | None) -> Confirmation:
    """A notification (ours) that did not move a pending order of its channel and amount;
    `row` its order as `_lock_orders` read it (locked), None if there is none."""
    if row is None:
        raise Refused("unknown_order", f"no order {notification.out_trade_no!r}")
    if row.channel != notification.channel:
        raise Refused("wrong_channel", f"order was opened for {row.channel}")
    if notification.amount_fen != row.amount_fen:
        raise Refused("amount_mismatch",
                      f"paid {notification.amount_fen} fen, order is {row.amount_fen} fen")
    if notification.paid and not notification.is_refund and row.status != CLOSED:
        # paid (by an earlier copy, here or before) or paid after close (kept for a manager):
        # a pending order of this channel and amount was moved by the first pass
        return Confirmation(DUPLICATE)
    order = session.get(Order, row.id)
    if notification.is_refund:
        return Confirmation(REFUND_NOTICE, order)
    if not notification.paid:
        return Confirmation(NOT_PAID, order)
    confirmation = _record_late_payment(session, order, notification)
    row.status = PAID_AFTER_CLOSE  # a later copy in this batch is a repeat
    return confirmation


@dataclass
class _OrderRow:
    """An order as `_lock_orders` read it; `status` follows what this transaction does."""

    id: int
    account_id: int
    channel: str
    amount_fen: int
    status: str


def _lock_orders(session: Session, out_trade_nos: set[str]) -> dict[str, _OrderRow]:
    """The orders of `out_trade_nos` that exist, by out_trade_no, read in one statement and,
    on PostgreSQL, locked FOR UPDATE in out_trade_no order (every batch takes them in that
    order: two batches holding copies of the same payments cannot deadlock on them)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        found = connection.execute(_LOCK_ORDERS_PG, {"nos": sorted(out_trade_nos)})
    else:
        found = connection.execute(_READ_ORDERS, {"nos": sorted(out_trade_nos)})
    return {no: _OrderRow(oid, account_id, channel, amount_fen, status)
            for oid, no, account_id, channel, amount_fen, status in found}


def _pay_pending(session: Session, moves: list[dict]) -> None:
    """Move the orders `_lock_orders` found pending to paid (`moves`: each order's id `oid` and
    the provider's `trade_no`) in one statement: on PostgreSQL one UPDATE over the ids and trade
    numbers as two arrays, on SQLite an executemany. Each row still must be `pending`; if any
    was not (nothing should be: the orders are locked, or the database is ours alone on SQLite)
    this raises and the transaction credits nothing."""
    if not moves:
        return
    now = utcnow()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        moved = connection.execute(_PAY_PENDING_PG, {
            "ids": [move["oid"] for move in moves],
            "trade_nos": [move["trade_no"] for move in moves],
            "pending": PENDING, "paid": PAID, "now": now})
    else:
        moved = connection.execute(_PAY_PENDING, [
            {**move, "pending": PENDING, "paid": PAID, "now": now} for move in moves])
    if moved.rowcount != len(moves):
        raise RuntimeError(f"{len(moves)} pending orders read, {moved.rowcount} moved to paid")


@dataclass(frozen=True)
class _Paid:
    account_id: int
    out_trade_no: str
    amount_fen: int


_ORDER = Order.__table__
# Built once: a statement's construction costs more than its execution on this path.
_ORDER_COLUMNS = (_ORDER.c.id, _ORDER.c.out_trade_no, _ORDER.c.account_id, _ORDER.c.channel,
                  _ORDER.c.amount_fen, _ORDER.c.status)
_READ_ORDERS = (sa.select(*_ORDER_COLUMNS)
                .where(_ORDER.c.out_trade_no.in_(bindparam("nos", expanding=True)))
                .order_by(_ORDER.c.out_trade_no))
# PostgreSQL: the list as one array parameter (one statement text whatever the batch's size)
_LOCK_ORDERS_PG = (sa.select(*_ORDER_COLUMNS)
                   .where(_ORDER.c.out_trade_no == sa.any_(
                       bindparam("nos", type_=postgresql.ARRAY(sa.String))))
                   .order_by(_ORDER.c.out_trade_no).with_for_update())
_PAY_PENDING = (
    update(_ORDER)
    .where(_ORDER.c.id == bindparam("oid"), _ORDER.c.status == bindparam("pending"))
    .values(status=bindparam("paid"), paid_at=bindparam("now"),
            provider_trade_no=bindparam("trade_no"))
)
# PostgreSQL: a batch's rows as arrays, one statement (an executemany processes and sends
# every row's parameters on its own)
_PAY_PENDING_PG = sa.text(
    f"UPDATE {_ORDER.name} SET status = :paid, paid_at = :now, provider_trade_no = v.trade_no "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:trade_nos AS varchar[])) AS v(id, trade_no) "
    f"WHERE {_ORDER.name}.id = v.id AND {_ORDER.name}.status = :pending"
).bindparams(bindparam("now", type_=UTCDateTime))
_ADD_NOTICE = insert(Notice.__table__)
_ADD_NOTICES_PG = sa.text(
    f"INSERT INTO {Notice.__table__.name} (account_id, kind, amount_fen, created_at) "
    "SELECT v.account_id, :kind, v.amount_fen, :now FROM unnest(CAST(:accounts AS integer[]), "
    "CAST(:amounts AS bigint[])) WITH ORDINALITY AS v(account_id, amount_fen, n) ORDER BY v.n"
).bindparams(bindparam("now", type_=UTCDateTime))


def _move(session: Session, order: Order, old: str, new: str, **values) -> bool:
    """The order's single transition old → new (a conditional UPDATE): True for the one
    transaction that made it, False for every other."""
    return session.execute(
        update(Order).where(Order.id == order.id, Order.status == old)
        .values(status=new, **values)
    ).rowcount == 1


def _credit_many(session: Session, credits: list[tuple[Order | _Paid, str]]) -> None:
    """Credit paid orders (each with its ledger memo), together: their top-up entries in one
    statement; from one look at their accounts' ledgers, the repayment of an outstanding
    emergency advance (应急用电) from each top-up in turn; the residents' notices in one
    statement; and, for each account with meters whose balance with the advance repaid allows
    it, a restore. The same as crediting them one after another: an account's balance only
    grows from one of its top-ups to the next, so the restore judged once, on its last balance,
    decides what the last of the one-by-one credits would."""
    if not credits:
        return
    lock_balances(session, {order.account_id for order, _ in credits})  # in account order
    post_entries(session, [
        {"account_id": order.account_id, "amount_fen": order.amount_fen, "kind": TOPUP,
         "idempotency_key": f"order:{order.out_trade_no}", "memo": memo, "energy_wh": None}
        for order, memo in credits])
    state = balances_advances_and_metered(session, {order.account_id for order, _ in credits})
    balance = {account_id: b for account_id, (b, _, _) in state.items()}
    owed = {account_id: o for account_id, (_, o, _) in state.items()}
    for order, _ in credits:
        if owed[order.account_id]:
            repaid = repay_emergency_credit(session, order.account_id, order.amount_fen,
                                            f"order:{order.out_trade_no}",
                                            owed=owed[order.account_id])
            owed[order.account_id] -= repaid
            balance[order.account_id] -= repaid
    now = utcnow()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(_ADD_NOTICES_PG, {
            "accounts": [order.account_id for order, _ in credits],
            "amounts": [order.amount_fen for order, _ in credits],
            "kind": PAYMENT_RECEIVED, "now": now})
    else:
        connection.execute(_ADD_NOTICE, [
            {"account_id": order.account_id, "kind": PAYMENT_RECEIVED,
             "amount_fen": order.amount_fen, "created_at": now} for order, _ in credits])
    last = {order.account_id: order.out_trade_no for order, _ in credits}
    for account_id, out_trade_no in last.items():
        if state[account_id][2]:  # an account without meters is spared the look
            restore_if_allowed(session, session.get(Account, account_id), balance[account_id],
                               reason=f"payment {out_trade_no}")


def _record_late_payment(session: Session, order: Order,
                         notification: Notification) -> Confirmation:
    if not _move(session, order, CLOSED, PAID_AFTER_CLOSE,
                 provider_trade_no=notification.provider_trade_no):
        return Confirmation(DUPLICATE, order)
    record_refused(session, channel=notification.channel, reason=LATE_PAYMENT,
                   detail=(f"{order.amount_fen} fen paid ({notification.provider_trade_no}) "
                           f"after the order was closed at {order.closed_at}: not credited; "
                           "credit it or have it refunded"),
                   out_trade_no=order.out_trade_no, payload=notification.raw)
    return Confirmation(LATE_PAYMENT, order)


def credit_late_payment(session: Session, out_trade_no: str, *, by: str) -> Order:
    """A manager decided to credit a payment that came after its order was closed: the same
    credit a notification would have made (entry, notice, restore), once. Raises ValueError
    if the order is not waiting for that decision."""
    order = session.exec(select(Order).where(Order.out_trade_no == out_trade_no)).first()
    if order is None or not _move(session, order, PAID_AFTER_CLOSE, PAID, paid_at=utcnow()):
        raise ValueError(f"order {out_trade_no!r} is not a payment waiting for a manager")
    _credit_many(session, [(order, f"{order.channel} {order.provider_trade_no}, late, "
                                   f"credited by {by}")])
    return order


def record_refused(session: Session, *, channel: str, reason: str, detail: str,
                   out_trade_no: str = "", payload: dict | str = "",
                   now: dt.datetime | None = None) -> RefusedNotification | None:
    """Count a refused notification (`RefusedCount`, per channel, reason and hour) and keep it
    whole only if it is among the first `REFUSED_SAMPLE` of its hour; returns the row kept, or
    None. One statement counts, whatever else writes at the same time."""
    now = now or utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    dialect = session.get_bind().dialect.name
    upsert = (pg_insert if dialect == "postgresql" else sqlite_insert)(RefusedCount)
    counted = session.execute(
        upsert.values(channel=channel, reason=reason, hour=hour, count=1, last_at=now)
        .on_conflict_do_update(index_elements=["channel", "reason", "hour"],
                               set_={"count": RefusedCount.__table__.c.count + 1,
                                     "last_at": now})
        .returning(RefusedCount.__table__.c.count)).scalar()
    if counted > REFUSED_SAMPLE:
        return None
    if isinstance(payload, dict):
        payload = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    row = RefusedNotification(channel=channel, reason=reason, detail=detail[:500],
                              out_trade_no=out_trade_no[:64], payload=payload[:8000],
                              received_at=now)
    session.add(row)
    return row
