"""Households under the real cut policy, polled at chosen moments (local time, Asia/Shanghai)."""

from __future__ import annotations

import datetime as dt

from sqlmodel import select

from app.billing.services import cut_if_exhausted
from app.commands.models import Command
from app.db import transaction
from app.estate.models import Account, Meter
from app.ledger.models import CHARGE, LedgerEntry
from app.notices.models import Notice
from app.policy.clock import LOCAL_TZ
from app.policy.models import CutApproval, CutDecision, ManagerTask
from tests.factories import REAL_POLICY, EstateFactory, account_by_number


def at(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    """A local moment in Asia/Shanghai (aware)."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=LOCAL_TZ)


def household(engine, *, balance_fen: int = -100, estate: dict | None = None, **account) -> str:
    """A supplied household in an estate with the real policy (quiet hours 20:00–08:00, the
    Chinese holiday calendar, 24 h notice lead) changed by `estate`; returns its 户号."""
    factory = EstateFactory(engine, **{**REAL_POLICY, **(estate or {})})
    gateway_id = factory.gateway("127.0.0.1", 1502)
    return factory.account(gateway_id=gateway_id, unit_id=1, balance_fen=balance_fen, **account)


def poll(engine, number: str, now: dt.datetime) -> bool:
    """What the worker does for a supplied meter after a poll, at `now`."""
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == number)).one()
        meter = s.exec(select(Meter).where(Meter.account_id == account.id)).one()
        return cut_if_exhausted(s, meter, account, now=now)


def post(engine, number: str, amount_fen: int, when: dt.datetime, kind: str = CHARGE) -> None:
    """A ledger entry dated `when` (history for the daily rate, or money in)."""
    account = account_by_number(engine, number)
    with transaction(engine) as s:
        s.add(LedgerEntry(account_id=account.id, amount_fen=amount_fen, kind=kind,
                          idempotency_key=f"test:{number}:{when.isoformat()}:{amount_fen}",
                          created_at=when))


def _rows(engine, model, order, **where):
    with transaction(engine, read_only=True) as s:
        q = select(model)
        for column, value in where.items():
            q = q.where(getattr(model, column) == value)
        return list(s.exec(q.order_by(order)))


def decisions(engine, number: str) -> list[CutDecision]:
    return _rows(engine, CutDecision, CutDecision.id, account_id=account_by_number(engine, number).id)


def outcomes(engine, number: str) -> list[tuple[str, str]]:
    return [(d.outcome, d.code) for d in decisions(engine, number)]


def commands(engine) -> list[Command]:
    return _rows(engine, Command, Command.id)


def tasks(engine) -> list[ManagerTask]:
    return _rows(engine, ManagerTask, ManagerTask.id)


def approvals(engine) -> list[CutApproval]:
    return _rows(engine, CutApproval, CutApproval.id)


def notices(engine, number: str) -> list[tuple[str, int]]:
    rows = _rows(engine, Notice, Notice.id, account_id=account_by_number(engine, number).id)
    return [(n.kind, n.amount_fen) for n in rows]
