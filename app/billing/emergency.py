"""应急用电: a cut household's one-off advance that restores power at once, repaid from its next
top-up.

Rules (docs/billing.md says the same):
- The amount is the account's `emergency_credit_fen` (0: not offered). At most once per cycle,
  the calendar month in China time: the entry's key is `emergency:<account>:<YYYY-MM>`.
- Taking it posts a ledger entry of kind `emergency_credit` (+amount) and, in the same
  transaction, queues a restore of every meter of the account that is (or may be) cut, whatever
  the restore threshold: the advance is exactly for a household below it.
- The outstanding advance is the sum of the account's `emergency_credit` entries. A top-up
  repays it first (`repay_emergency_credit`, called after the top-up entry is posted and before
  the restore decision): an `emergency_credit` entry of −min(outstanding, top-up), key
  `emergency_repay:<top-up entry's key>`, so the restore threshold is judged on the balance with
  the advance repaid. A top-up smaller than the advance repays what it can; the next one the rest.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, select

from app.commands.services import meters_of, queue_restore
from app.db import utcnow
from app.estate.models import Account
from app.ledger.models import EMERGENCY_CREDIT, LedgerEntry
from app.ledger.services import funds, post_entry
from app.money import fen_to_yuan_str
from app.notices.models import EMERGENCY_CREDIT as EMERGENCY_NOTICE
from app.notices.models import Notice
from app.tariffs import CHINA_TZ


class EmergencyCreditRefused(ValueError):
    """Not offered to this account, or already taken this month."""


def _month(now: dt.datetime | None) -> str:
    return (now or utcnow()).astimezone(CHINA_TZ).strftime("%Y-%m")


def emergency_credit_offered(session: Session, account: Account,
                             now: dt.datetime | None = None) -> bool:
    """Whether the account page offers the advance now: offered to this account and not yet
    taken this month (the cycle). The page shows it to a household that is cut or below its
    restore threshold; taking it is refused the same way whoever asks."""
    if account.emergency_credit_fen <= 0 or account.closed_at is not None:
        return False
    key = f"emergency:{account.id}:{_month(now)}"
    return session.exec(select(LedgerEntry.id).where(
        LedgerEntry.idempotency_key == key)).first() is None


def outstanding_emergency_fen(session: Session, account_id: int) -> int:
    """The advance not yet repaid, in fen (≥ 0): the sum of the account's emergency entries
    (kept in `account_balance.advance_fen`)."""
    return funds(session, {account_id})[account_id].advance_fen


def take_emergency_credit(session: Session, account: Account,
                          now: dt.datetime | None = None) -> int:
    """Advance `account.emergency_credit_fen` and queue the restore, in the caller's transaction;
    returns the entry's id. Raises `EmergencyCreditRefused` when not offered or already taken this month."""
    if account.closed_at is not None:
        raise EmergencyCreditRefused("the account is closed")
    if account.emergency_credit_fen <= 0:
        raise EmergencyCreditRefused("应急用电 is not offered to this account")
    month = _month(now)
    entry = post_entry(session, account_id=account.id, amount_fen=account.emergency_credit_fen,
                       kind=EMERGENCY_CREDIT, idempotency_key=f"emergency:{account.id}:{month}",
                       memo=f"应急用电 {fen_to_yuan_str(account.emergency_credit_fen)} 元 ({month}); "
                            f"repaid from the next top-up")
    if entry is None:
        raise EmergencyCreditRefused(f"应急用电 was taken already in {month}")
    session.add(Notice(account_id=account.id, kind=EMERGENCY_NOTICE,
                       amount_fen=account.emergency_credit_fen, created_at=now or utcnow()))
    for meter in meters_of(session, account.id):
        if meter.relay_open is not False:
            queue_restore(session, meter, f"emergency credit {month}")
    return entry


def balance_and_advance_fen(session: Session, account_id: int) -> tuple[int, int]:
    """(the balance, the advance outstanding) in fen (`app.ledger.services.funds`)."""
    f = funds(session, {account_id})[account_id]
    return f.balance_fen, f.advance_fen


def balances_advances_and_metered(session: Session,
                                  account_ids: set[int]) -> dict[int, tuple[int, int, bool]]:
    """What top-ups' credits need to know of their accounts, in one statement: per account
    (the balance, the advance outstanding) as `balance_and_advance_fen`, and whether it has a
    meter at all."""
    return {account_id: (f.balance_fen, f.advance_fen, f.metered)
            for account_id, f in funds(session, account_ids).items()}


def repay_emergency_credit(session: Session, account_id: int, topup_fen: int,
                           topup_key: str, *, owed: int | None = None) -> int:
    """Repay the outstanding advance (`owed`, when the caller has just read it) from a top-up
    of `topup_fen` whose ledger key is `topup_key`; returns the fen repaid (0 when nothing is
    owed or it was repaid already)."""
    if owed is None:
        owed = outstanding_emergency_fen(session, account_id)
    repay = min(owed, max(0, topup_fen))
    if not repay:
        return 0
    entry = post_entry(session, account_id=account_id, amount_fen=-repay, kind=EMERGENCY_CREDIT,
                       idempotency_key=f"emergency_repay:{topup_key}",
                       memo=f"应急用电 repaid {fen_to_yuan_str(repay)} 元 from the top-up")
    return repay if entry is not None else 0
