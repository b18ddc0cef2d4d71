"""Closing an account (销户) and reopening it: what the console and `feikong account close`
call, and `feikong refund --reason account_closure`.

Closing, in one transaction:
1. the final reading is billed: the charge its meters have accrued up to their last stored
   reading (the worker stores one every few seconds) is posted, to the fen, however small
   (`post_accrued(always=True)`): the balance is final;
2. the balance is settled: refunded through the providers that took it (`request_refund`,
   reason `account_closure`; the caller submits the refunds after the commit) or carried
   (it stays on the account, for a reopening or a payout recorded otherwise). Arrears stay
   on the account as arrears;
3. the account is marked closed (`closed_at`) and its meters' pending commands are
   cancelled. From then on it is not read (the worker drops its meters), charged, warned,
   cut or shared, and its pages say it is closed; nobody can top it up.

Reopening clears `closed_at`: the worker reads the meters again, and the first reading is
charged from the register at closing (the meter counted whatever was used meanwhile).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, select

from app.billing.services import post_accrued
from app.commands.models import CANCELLED, PENDING, Command
from app.db import utcnow
from app.estate.models import Account, Meter
from app.ledger.services import balance_fen, lock_balances
from app.orders.models import ACCOUNT_CLOSURE, Refund
from app.orders.refunds import RefundRefused, RefundRequest, request_refund

REFUND, CARRY = "refund", "carry"


class ClosingRefused(ValueError):
    """The account cannot be closed (or reopened) as asked; nothing was changed."""


@dataclass(frozen=True)
class Closing:
    final_fen: int  # the accrued charge posted at closing
    balance_fen: int  # the balance after it, before any refund
    refunds: list[Refund]  # to submit after the commit (refund), or [] (carry)
    last_read_at: dt.datetime | None  # the final reading's time (the newest of the meters)
    commands_cancelled: int


def close_account(session: Session, account: Account, *, by: str, reason: str, settle: str,
                  channels: tuple[str, ...] = (), now: dt.datetime | None = None) -> Closing:
    """Close `account` in the caller's transaction (see the module's note). `settle`: REFUND
    (the whole positive balance back through the providers; refused, changing nothing, when
    they cannot take it all back) or CARRY. Raises ClosingRefused."""
    now = now or utcnow()
    if settle not in (REFUND, CARRY):
        raise ClosingRefused(f"settle must be {REFUND} or {CARRY}")
    if not reason.strip() or not by.strip():
        raise ClosingRefused("say who closes the account, and why")
    lock_balances(session, [account.id])  # balance rows before meter rows, as everywhere
    account = session.exec(select(Account).where(Account.id == account.id)
                           .with_for_update()).one()
    if account.closed_at is not None:
        raise ClosingRefused(f"account {account.number} is closed already")
    meters = list(session.exec(select(Meter).where(Meter.account_id == account.id)
                               .order_by(Meter.id).with_for_update()))
    final = sum(post_accrued(session, meter, account, always=True) for meter in meters)
    balance = balance_fen(session, account.id)
    refunds: list[Refund] = []
    if settle == REFUND and balance > 0:
        try:
            refunds = request_refund(session, RefundRequest(
                account.number, None, ACCOUNT_CLOSURE, by, reason), channels=channels, now=now)
        except RefundRefused as exc:
            raise ClosingRefused(str(exc)) from exc
    cancelled = session.execute(
        update(Command).where(Command.meter_id.in_([m.id for m in meters] or [-1]),
                              Command.state == PENDING)
        .values(state=CANCELLED, completed_at=now)).rowcount
    account.closed_at = now
    session.add(account)
    read_at = max((m.last_read_at for m in meters if m.last_read_at), default=None)
    return Closing(final, balance, refunds, read_at, cancelled)


def reopen_account(session: Session, account: Account) -> None:
    """Open a closed account again, in the caller's transaction."""
    account = session.exec(select(Account).where(Account.id == account.id)
                           .with_for_update()).one()
    if account.closed_at is None:
        raise ClosingRefused(f"account {account.number} is not closed")
    account.closed_at = None
    session.add(account)
