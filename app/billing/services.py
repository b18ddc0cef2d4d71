"""Turning consumption into charges on the ledger (flat price for now)."""

from __future__ import annotations

from decimal import Decimal

from sqlmodel import Session, select

from app.anomalies.models import COMMAND_EXPIRED, Anomaly
from app.commands.services import queue_cut
from app.estate.models import Account, Meter
from app.ledger.models import CHARGE
from app.ledger.services import balance_fen, post_entry
from app.money import energy_cost, post_increment

E7 = Decimal(10) ** 7  # billed totals are kept as integers of 1e-7 yuan: exact for 4-place prices


def post_consumption(session: Session, meter: Meter, account: Account,
                     energy_wh: int, *, interval: str) -> int:
    """Charge `account` for `energy_wh` its meter counted over `interval` (the two register
    readings, "from:to" in Wh); returns fen posted.

    The exact cost accumulates on the meter (`billed_exact_e7`); the charge posted is whatever
    brings the posted total to the exact total rounded once (see `app.money.post_increment`),
    so the sub-fen remainder is carried, never lost or invented. The idempotency key is the
    meter and the interval, so the same interval processed twice charges once.
    """
    if energy_wh <= 0:
        return 0
    exact = energy_cost(energy_wh, account.price_yuan_per_kwh)
    before = Decimal(meter.billed_exact_e7) / E7
    fen = post_increment(before, exact)
    entry = post_entry(
        session, account_id=account.id, amount_fen=-fen, kind=CHARGE,
        idempotency_key=f"charge:{meter.id}:{interval}",
        memo=f"{energy_wh} Wh × {account.price_yuan_per_kwh} 元/kWh", energy_wh=energy_wh,
    )
    if entry is None:
        return 0
    meter.billed_exact_e7 += int(exact * E7)
    meter.billed_fen += fen
    session.add(meter)
    return fen


def cut_if_exhausted(session: Session, meter: Meter, account: Account,
                     balance: int | None = None) -> bool:
    """Queue a cut when the balance (given, or read) is below the account's cut line and the
    supply is on.

    Not while an earlier command for this meter expired unconfirmed and no manager has looked
    at it (a welded relay would otherwise be sent a new cut after every expiry). Quiet hours,
    holidays, notices and the care list come with the cut policy."""
    if meter.relay_open is not False:
        return False
    if balance is None:
        balance = balance_fen(session, account.id)
    if balance >= account.cut_below_fen:
        return False
    if session.exec(select(Anomaly.id).where(Anomaly.meter_id == meter.id,
                                             Anomaly.kind == COMMAND_EXPIRED,
                                             Anomaly.resolved_at.is_(None))).first():
        return False
    return queue_cut(session, meter, reason="balance exhausted") is not None
