"""What a resident needs to know about their supply: why and since when it is cut, and how
much a top-up must be to bring it back. Pure reads; the rule mirrors the engine's.

The engine restores a household when, after the top-up, its balance is above the restore
threshold (`app.commands.services.restore_if_allowed`), and a top-up first repays any 应急用电
advance (`app.billing.emergency.repay_emergency_credit`). So a top-up of X fen leaves
balance + X − min(owed, X), and the least X that restores is threshold − balance + owed + 1 fen
(never less than the smallest top-up allowed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session, select

from app.commands.models import CUT, DONE, Command
from app.estate.models import Account, Meter
from app.orders.services import MIN_TOPUP_FEN

BALANCE = "balance"  # cut because the balance ran out (the policy's cut)
MANAGER = "manager"  # cut by a property manager in the console


def balance_after_topup(balance_fen: int, owed_fen: int, topup_fen: int) -> int:
    """The balance once a top-up of `topup_fen` is credited and has repaid the advance."""
    return balance_fen + topup_fen - min(owed_fen, topup_fen)


def restores(account: Account, balance_fen: int, owed_fen: int, topup_fen: int) -> bool:
    """Whether a top-up of `topup_fen` lifts the balance above the restore threshold."""
    return balance_after_topup(balance_fen, owed_fen, topup_fen) > account.restore_threshold_fen


def amount_to_restore_fen(account: Account, balance_fen: int, owed_fen: int) -> int:
    """The least top-up, in fen, after which the household is restored (0: the balance is
    above the restore threshold already)."""
    if balance_fen > account.restore_threshold_fen:  # any top-up restores (or none is needed)
        return 0
    return max(account.restore_threshold_fen - balance_fen + owed_fen + 1, MIN_TOPUP_FEN)


def whole_yuan_at_least(fen: int) -> int:
    """`fen` rounded up to whole yuan (the preset button for the amount needed), in yuan."""
    return -(-fen // 100)


@dataclass(frozen=True)
class Cut:
    why: str  # BALANCE | MANAGER
    since: dt.datetime | None  # when the cut was confirmed by read-back


def last_cut(session: Session, account_id: int) -> Cut | None:
    """The confirmed cut that holds the household's supply off now (None when none of its
    meters is known to be off)."""
    meter_ids = [m for m, open_ in session.exec(
        select(Meter.id, Meter.relay_open).where(Meter.account_id == account_id)) if open_]
    if not meter_ids:
        return None
    command = session.exec(
        select(Command).where(Command.meter_id.in_(meter_ids), Command.action == CUT,
                              Command.state == DONE)
        .order_by(Command.completed_at.desc()).limit(1)).first()
    if command is None:
        return Cut(BALANCE, None)
    return Cut(MANAGER if command.reason.startswith("manual ") else BALANCE,
               command.completed_at)
