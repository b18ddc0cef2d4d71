"""An account's states as the console lists and counts them (低 low, 用尽 exhausted, 停电 cut,
离线 offline, 爱心档案 care), judged in SQL so that a list or a count costs the same at 10,000
accounts as at 10.

Low and exhausted compare the balance (`app.ledger.services.funds`: the kept ledger sum less
the charge accrued and not yet posted, rounded by the one rule) with the account's lines. The
rounding stays in Python, in one place: SQL selects the *candidates* with an upper bound of the
accrued charge (⌊exact⌋ + 1 fen per meter, above any rounding of it), and `funds` judges just
those. The accrued charge is at most an hour's use, so the candidates are the answer plus a
few accounts near their line."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from app.estate.models import Account, Meter
from app.ledger.models import AccountBalance
from app.ledger.services import funds, kept_balances

STATES = ("low", "exhausted", "cut", "offline", "care")
E5 = 100_000  # 1e-7 yuan per fen

_ACCRUED_BOUND = (sa.select(Meter.account_id.label("account_id"),
                            sa.func.sum(Meter.billed_exact_e7 / E5 + 1 - Meter.billed_fen)
                            .label("fen"))
                  .where(Meter.account_id.is_not(None))
                  .group_by(Meter.account_id).subquery("accrued_bound"))


def _below(line) -> sa.ColumnElement:
    """The account's balance may be below `line` (an upper bound of the accrued charge taken
    off the kept balance): a superset, narrowed by `judge`."""
    row = aliased(AccountBalance)  # the list may join AccountBalance itself (sort)
    kept = (sa.select(row.balance_fen).where(row.account_id == Account.id)
            .correlate(Account).scalar_subquery())
    accrued = (sa.select(_ACCRUED_BOUND.c.fen).where(_ACCRUED_BOUND.c.account_id == Account.id)
               .correlate(Account).scalar_subquery())
    return sa.func.coalesce(kept, 0) - sa.func.coalesce(accrued, 0) < line


def _has_meter(*where) -> sa.ColumnElement:
    return sa.exists().where(Meter.account_id == Account.id, *where)


def clause(state: str) -> sa.ColumnElement:
    """A WHERE clause on `Account` that holds for every account in `state` (exactly for cut,
    offline and care; a few more for low and exhausted, see the module's note)."""
    if state == "low":
        return _below(Account.low_balance_threshold_fen)
    if state == "exhausted":
        return _below(Account.cut_below_fen)
    if state == "cut":
        return _has_meter(Meter.relay_open.is_(True))
    if state == "offline":
        return _has_meter(Meter.online.is_(False))
    if state == "care":
        return Account.care_list.is_(True)
    raise ValueError(state)


def judge(session: Session, accounts: list[Account]) -> dict[int, tuple[set[str], int]]:
    """Each account's states and its balance (fen), by account id."""
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
    """Up to `size` accounts of `query` (ordered) in `state` ('' for any), and their states:
    candidates are read in SQL in the query's order, judged, and read on until `size` are
    found or none are left."""
    if state:
        query = query.where(clause(state))
    if state not in ("low", "exhausted"):  # exact in SQL
        rows = list(session.exec(query.limit(size)))
        return rows, judge(session, rows)
    rows, states, offset, batch = [], {}, 0, size + 8
    while len(rows) < size:
        candidates = list(session.exec(query.offset(offset).limit(batch)))
        judged = judge(session, candidates)
        states.update(judged)
        rows += [a for a in candidates if state in judged[a.id][0]]
        if len(candidates) < batch:
            break
        offset += batch
    return rows[:size], states


def counts(session: Session, query) -> dict:
    """Over the accounts of `query` (a SELECT of `Account`), by building id: households, the
    balance summed (fen) and the number of accounts in each state."""
    base = query.subquery()
    acc = aliased(Account, base)
    out: dict[int, dict] = defaultdict(lambda: {"households": 0, "balance": 0,
                                                **{s: 0 for s in STATES}})
    kept = (sa.select(acc.building_id, sa.func.count(), sa.func.coalesce(
        sa.func.sum(AccountBalance.balance_fen), 0))
        .select_from(acc).outerjoin(AccountBalance, AccountBalance.account_id == acc.id)
        .group_by(acc.building_id))
    for building_id, households, balance in session.execute(kept):
        out[building_id]["households"] = households
        out[building_id]["balance"] = int(balance)
    # the accrued charges, by the one rounding rule: only meters with something accrued
    accrued = (sa.select(acc.id, Meter.billed_exact_e7, Meter.billed_fen)
               .join(Meter, Meter.account_id == acc.id)
               .where(Meter.billed_exact_e7 != Meter.billed_fen * E5))
    ids = sorted({account_id for account_id, _, _ in session.execute(accrued)})
    if ids:
        money, kept = funds(session, set(ids)), kept_balances(session, set(ids))
        for account_id, building_id in session.execute(
                sa.select(acc.id, acc.building_id).where(acc.id.in_(ids))):
            out[building_id]["balance"] -= kept.get(account_id, 0) - money[account_id].balance_fen
    for state in ("cut", "offline", "care"):
        for building_id, n in session.execute(
                sa.select(Account.building_id, sa.func.count())
                .where(Account.id.in_(sa.select(base.c.id)), clause(state))
                .group_by(Account.building_id)):
            out[building_id][state] = n
    for state in ("low", "exhausted"):
        candidates = list(session.exec(select(Account).where(
            Account.id.in_(sa.select(base.c.id)), clause(state))))
        judged = judge(session, candidates)
        for a in candidates:
            if state in judged[a.id][0]:
                out[a.building_id][state] += 1
    return out
