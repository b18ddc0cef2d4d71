"""Balance notices (预警/提醒): low balance, less than a day left, balance exhausted.

Notices are rows (`Notice`) in the caller's transaction; delivering them (portal, WeChat
template message, SMS) is someone else's job. Too many reminders is itself a complaint, so each
kind is rate-limited by the account's strategy.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, insert
from sqlmodel import Session, select

from app.estate.models import Account
from app.ledger.models import CHARGE, SHARE, LedgerEntry
from app.notices.models import BALANCE_EXHAUSTED, LESS_THAN_A_DAY, LOW_BALANCE, Notice
from app.policy.clock import local_midnight, to_local
from app.policy.strategies import RESIDENTIAL, Strategy, strategy_named

SPENDING_KINDS = (CHARGE, SHARE)  # what "the charges" of an account are: its use and its share


def warn_low_balance(session: Session, account: Account, balance_fen: int,
                     now: dt.datetime, last: NoticeBatch | None = None) -> Notice | None:
    """Add the balance notice now due for `account`, if any; at most one per call.

    - Balance below the cut line (`cut_below_fen`): BALANCE_EXHAUSTED, once per exhaustion
      episode (`account.exhausted_at`, which the caller keeps). It is the notice a cut waits for
      (see `cut_notice_at`); no low-balance notices while exhausted.
    - Else below `low_balance_threshold_fen`: LOW_BALANCE.
    - Else when one more day at the recent daily rate would exceed the balance: LESS_THAN_A_DAY.
    LOW_BALANCE and LESS_THAN_A_DAY each at most once per the strategy's `notice_interval`.
    `amount_fen` carries the balance. Moves no money.

    `last`: a batch of readings' `NoticeBatch` (the accounts' latest notices read at once;
    the notice is then a row of the batch, inserted by `NoticeBatch.insert`, and None is
    returned); without it, the latest notice is read here and the notice added to the session.
    """
    strategy = strategy_named(account.strategy) or RESIDENTIAL
    if balance_fen < account.cut_below_fen:
        if last is not None:
            sent = last.latest.get((account.id, BALANCE_EXHAUSTED))
            if account.exhausted_at is not None and sent is not None \
                    and sent >= account.exhausted_at:
                return None
        elif cut_notice_at(session, account) is not None:
            return None
        return _add(session, account, BALANCE_EXHAUSTED, balance_fen, now, last)
    if balance_fen < account.low_balance_threshold_fen:
        kind = LOW_BALANCE
    elif daily_rate_fen(session, account, now, strategy) > balance_fen:
        kind = LESS_THAN_A_DAY
    else:
        return None
    if last is not None:
        previous = last.latest.get((account.id, kind))
    else:
        previous = session.exec(select(func.max(Notice.created_at))
                                .where(Notice.account_id == account.id, Notice.kind == kind)).one()
    if previous is not None and previous > now - strategy.notice_interval:
        return None
    return _add(session, account, kind, balance_fen, now, last)


class NoticeBatch:
    """The balance notices of a batch of readings: the accounts' latest notice of each kind,
    read in one query, and the batch's new notices, inserted in one statement (`insert`)."""

    def __init__(self, session: Session, account_ids) -> None:
        self.latest: dict[tuple[int, str], dt.datetime] = {}  # (account id, kind) → when
        self.rows: list[dict] = []
        if account_ids:
            self.latest = {(account_id, kind): at for account_id, kind, at in session.exec(
                select(Notice.account_id, Notice.kind, func.max(Notice.created_at))
                .where(Notice.account_id.in_(account_ids),
                       Notice.kind.in_((BALANCE_EXHAUSTED, LOW_BALANCE, LESS_THAN_A_DAY)))
                .group_by(Notice.account_id, Notice.kind)).all()}

    def add(self, account_id: int, kind: str, amount_fen: int, now: dt.datetime) -> None:
        self.rows.append({"account_id": account_id, "kind": kind, "amount_fen": amount_fen,
                          "created_at": now})
        self.latest[(account_id, kind)] = now

    def insert(self, session: Session) -> None:
        """Insert the notices added so far (before anything reads them back)."""
        if self.rows:
            session.execute(insert(Notice.__table__), self.rows)
            self.rows = []


def cut_notice_at(session: Session, account: Account) -> dt.datetime | None:
    """When this exhaustion episode's BALANCE_EXHAUSTED notice went out (None: not yet, or the
    account is not exhausted)."""
    if account.exhausted_at is None:
        return None
    first = session.exec(select(func.min(Notice.created_at))
                         .where(Notice.account_id == account.id, Notice.kind == BALANCE_EXHAUSTED,
                                Notice.created_at >= account.exhausted_at)).one()
    return first


def daily_rate_fen(session: Session, account: Account, now: dt.datetime,
                   strategy: Strategy) -> int:
    """The recent daily rate in fen: the account's charges (its use and its share) over the
    last `strategy.rate_days` complete local days, divided by those days, rounded up.

    Days before the account's first complete day do not count (a new account is averaged over
    the days it has); no complete day yet gives 0. Kept on the account (`daily_rate_fen`,
    `daily_rate_on`) and computed once per local day, so a poll costs no ledger scan.
    """
    today = to_local(now).date()
    if account.daily_rate_on == today:
        return account.daily_rate_fen
    first_day = to_local(account.created_at).date() + dt.timedelta(days=1)
    start = max(today - dt.timedelta(days=strategy.rate_days), first_day)
    days = (today - start).days
    rate = 0
    if days > 0:
        spent = -session.exec(
            select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).where(
                LedgerEntry.account_id == account.id,
                LedgerEntry.kind.in_(SPENDING_KINDS),
                LedgerEntry.created_at >= local_midnight(start),
                LedgerEntry.created_at < local_midnight(today),
            )
        ).one()
        rate = max(0, -(-int(spent) // days))
    account.daily_rate_fen, account.daily_rate_on = rate, today
    session.add(account)
    return rate


def _add(session: Session, account: Account, kind: str, balance_fen: int,
         now: dt.datetime, batch: NoticeBatch | None) -> Notice | None:
    if batch is not None:
        batch.add(account.id, kind, balance_fen, now)
        return None
    notice = Notice(account_id=account.id, kind=kind, amount_fen=balance_fen, created_at=now)
    session.add(notice)  # flushed with the caller's next query or commit
    return notice

