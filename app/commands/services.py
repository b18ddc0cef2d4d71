"""Queueing cut, restore and read commands, and what a resident's page says about power."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, select

from app import wakeup
from app.commands.models import CANCELLED, CUT, PENDING, READ, RESTORE, Command
from app.db import utcnow
from app.estate.models import Account, Meter
from app.settings import get_settings

# What the page shows for an account's supply.
POWER_ON = "on"
POWER_OFF = "off"
RESTORING = "restoring"
# Restored by arming the relay (允许合闸): the resident closes it with the meter's button.
PRESS_BUTTON = "press_button"
CUTTING = "cutting"
UNKNOWN = "unknown"


def pending_command(session: Session, meter_id: int, action: str) -> Command | None:
    return session.exec(
        select(Command).where(
            Command.meter_id == meter_id, Command.action == action, Command.state == PENDING
        )
    ).first()


def _queue(session: Session, meter: Meter, action: str, reason: str, expiry_s: float) -> Command:
    now = utcnow()
    command = Command(
        meter_id=meter.id,
        action=action,
        reason=reason,
        created_at=now,
        next_attempt_at=now,
        expires_at=now + dt.timedelta(seconds=expiry_s),
    )
    session.add(command)
    session.flush()
    wakeup.request_wake(session, meter.gateway_id)
    return command


def cancel_pending_cut(session: Session, meter: Meter, why: str) -> None:
    cut = pending_command(session, meter.id, CUT)
    if cut is not None:
        cut.state = CANCELLED
        cut.completed_at = utcnow()
        cut.reason = f"{cut.reason}; {why}" if cut.reason else why
        session.add(cut)


def queue_restore(session: Session, meter: Meter, reason: str) -> Command:
    """Queue a restore for `meter` in the caller's transaction, cancelling any pending cut.

    Returns the pending restore (an existing one is reused: never two at once). The worker is
    woken when the transaction commits.
    """
    cancel_pending_cut(session, meter, "cancelled by restore")
    existing = pending_command(session, meter.id, RESTORE)
    if existing is not None:
        return existing
    return _queue(session, meter, RESTORE, reason, get_settings().restore_expiry_s)


def queue_cut(session: Session, meter: Meter, reason: str) -> Command | None:
    """Queue a cut for `meter`, unless a cut or a restore is already pending (a restore wins)."""
    if pending_command(session, meter.id, CUT) or pending_command(session, meter.id, RESTORE):
        return None
    return _queue(session, meter, CUT, reason, get_settings().cut_expiry_s)


def queue_read(session: Session, meter: Meter, reason: str) -> Command:
    """Ask the worker to read `meter` now, ahead of its routine poll (after any restore or cut
    on its gateway); an existing pending read is reused. Done when the reading is stored;
    expires after `read_expiry_s` (an unread meter is the breaker's business, not an anomaly)."""
    existing = pending_command(session, meter.id, READ)
    if existing is not None:
        return existing
    return _queue(session, meter, READ, reason, get_settings().read_expiry_s)


def meters_of(session: Session, account_id: int) -> list[Meter]:
    return list(session.exec(select(Meter).where(Meter.account_id == account_id).order_by(Meter.id)))


def restore_if_allowed(session: Session, account: Account, balance_fen: int, reason: str) -> list[Command]:
    """After money came in: when the balance is above the account's restore threshold, restore
    every meter of the account that is (or may be) cut, and cancel pending cuts. A closed
    account (销户) is not restored: its meters are no longer ours to switch."""
    if balance_fen <= account.restore_threshold_fen or account.closed_at is not None:
        return []
    queued = []
    for meter in meters_of(session, account.id):
        if meter.relay_open is False:  # supply is on: only a pending cut must go
            cancel_pending_cut(session, meter, "cancelled by payment")
            continue
        queued.append(queue_restore(session, meter, reason))
    return queued


def power_state(session: Session, account_id: int) -> str:
    """The supply as the resident should read it, from the meters' confirmed relay states and
    the commands under way."""
    states = []
    for meter in meters_of(session, account_id):
        if pending_command(session, meter.id, RESTORE):
            states.append(RESTORING)
        elif meter.relay_open is True and meter.close_allowed:
            states.append(PRESS_BUTTON)
        elif meter.relay_open is True:
            states.append(POWER_OFF)
        elif meter.relay_open is None:
            states.append(UNKNOWN)
        else:
            states.append(POWER_ON)
    for state in (RESTORING, PRESS_BUTTON, POWER_OFF, UNKNOWN, POWER_ON):
        if state in states:
            return state
    return UNKNOWN
