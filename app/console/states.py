"""An account's states as the console lists and counts them (低 low, 用尽 exhausted, 停电 cut,
离线 offline, 爱心档案 care), judged in SQL so that a list or a count costs the same at 10,000
accounts as at 10.

Low and exhausted compare the balance everyone reads (`app.ledger.services.funds`: the kept
ledger sum less the charge accrued and not yet posted, rounded by the one rule) with the
account's lines. In SQL the balance is the kept balance (`account_balance`) less the sum over
the account's meters of `e7_to_fen_sql(billed_exact_e7) - billed_fen`: the one rounding rule's
SQL rendering (app/money.py, tested against it value by value)."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from app.estate.models import Account, Meter
from app.ledger.models import AccountBalance
from app.ledger.services import funds
from app.money import e7_to_fen_sql

STATES = ("low", "exhausted", "cut", "offline", "care")
LINES = {"low": Account.low_balance_threshold_fen, "exhausted": Account.cut_below_fen}


def _accrued():
    """Per account: the fen accrued and not yet posted, over its meters."""
    return (sa.select(Meter.account_id.label("account_id"),
                      sa.func.sum(e7_to_fen_sql(Meter.billed_exact_e7) - Meter.billed_fen)
                      .label("fen"))
            .where(Meter.account_id.is_not(None))
            .group_by(Meter.account_id).subquery())


def with_balance(query):
    """`query` (a SELECT from `Account`) joined to what makes each account's balance, and that
    balance as a column expression: (query, balance)."""
    kept, accrued = aliased(AccountBalance), _accrued()
    query = (query.outerjoin(kept, kept.account_id == Account.id)
             .outerjoin(accrued, accrued.c.account_id == Account.id))
    return query, sa.func.coalesce(kept.balance_fen, 0) - sa.func.coalesce(accrued.c.fen, 0)


def _has_meter(*where) -> sa.ColumnElement:
    return sa.exists().where(Meter.account_id == Account.id, *where)


def restrict(query, state: str):
    """`query` (a SELECT from `Account`) narrowed to the accounts in `state`."""
    if state in LINES:
        query, balance = with_balance(query)
        return query.where(balance < LINES[state])
    if state == "cut":
        return query.where(_has_meter(Meter.relay_open.is_(True)))
    if state == "offline":
        return query.where(_has_meter(Meter.online.is_(False)))
    if state == "care":
        return query.where(Account.care_list.is_(True))
    raise ValueError(state)


def judge(session: Session, accounts: list[Account]) -> dict[int, tuple[set[str], int]]:
    """Each account's states and its balance (fen), by account id: for the rows a page shows."""
    money = funds(session, {a.id for a in accounts})
    meters = defaultdict(list)
    ids = [a.id for a in accounts]
    for i in range(0, len(ids), 1000):
        for m in session.exec(select(Meter).where(Meter.account_id.in_(ids[i:i + 1000]))):
            meters[m.account_id].append(m)
    found = {}
    for a in accounts:
        balance = money[a.id].balance_fen
        states = set()
        if balance < a.low_balance_threshold_fen:
            states.add("low")
        if balance < a.cut_below_fen:
            states.add("exhausted")
        if any(m.relay_open is True for m in meters[a.id]):
            states.add("cut")
        if any(not m.online for m in meters[a.id]):
            states.add("offline")
        if a.care_list:
            states.add("care")
        found[a.id] = (states, balance)
    return found


def page(session: Session, query, state: str, size: int) -> tuple[list[Account], dict]:
    """Up to `size` accounts of `query` (ordered) in `state` ('' for any), and their states."""
    if state:
        query = restrict(query, state)
    rows = list(session.exec(query.limit(size)))
    return rows, judge(session, rows)


def counts(session: Session, query) -> dict:
    """Over the accounts of `query` (a SELECT of `Account`), by building id: households, the
    balance summed (fen) and the number of accounts in each state; two grouped queries."""
    base = query.subquery()
    acc = aliased(Account, base)
    out: dict[int, dict] = defaultdict(lambda: {"households": 0, "balance": 0,
                                                **{s: 0 for s in STATES}})
    kept, accrued = aliased(AccountBalance), _accrued()
    balance = sa.func.coalesce(kept.balance_fen, 0) - sa.func.coalesce(accrued.c.fen, 0)

    def below(line):
        return sa.func.sum(sa.case((balance < line, 1), else_=0))

    for building_id, households, total, low, exhausted, care in session.execute(
            sa.select(acc.building_id, sa.func.count(), sa.func.sum(balance),
                      below(acc.low_balance_threshold_fen), below(acc.cut_below_fen),
                      sa.func.sum(sa.case((acc.care_list.is_(True), 1), else_=0)))
            .select_from(acc)
            .outerjoin(kept, kept.account_id == acc.id)
            .outerjoin(accrued, accrued.c.account_id == acc.id)
            .group_by(acc.building_id)):
        out[building_id].update(households=households, balance=int(total or 0),
                                low=int(low or 0), exhausted=int(exhausted or 0),
                                care=int(care or 0))
    for building_id, cut, offline in session.execute(
            sa.select(acc.building_id,
                      sa.func.count(sa.distinct(sa.case((Meter.relay_open.is_(True), acc.id)))),
                      sa.func.count(sa.distinct(sa.case((Meter.online.is_(False), acc.id)))))
            .select_from(acc).join(Meter, Meter.account_id == acc.id)
            .group_by(acc.building_id)):
        out[building_id].update(cut=cut, offline=offline)
    return out
