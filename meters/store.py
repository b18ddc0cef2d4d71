"""The worker's database side: what to poll, which commands are due, and recording outcomes.

Plain synchronous functions over an engine (the worker runs them in a thread). No Modbus here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case
from sqlalchemy.engine import Engine
from sqlmodel import select

from app.billing.services import cut_if_exhausted, post_consumption
from app.commands.models import CUT, DONE, EXPIRED, PENDING, RESTORE, Command, CommandAttempt
from app.db import transaction, utcnow
from app.estate.models import Account, Gateway, Meter, Reading
from app.notices.models import POWER_CUT, POWER_RESTORED, Notice

CONFIRMED = "confirmed"
MAX_BACKOFF_S = 60.0


@dataclass(frozen=True)
class MeterSpec:
    meter_id: int
    unit_id: int


@dataclass(frozen=True)
class GatewaySpec:
    gateway_id: int
    name: str
    host: str
    port: int
    meters: tuple[MeterSpec, ...]


@dataclass(frozen=True)
class DueCommand:
    command_id: int
    meter_id: int
    unit_id: int
    action: str
    attempts: int

    @property
    def wants_open(self) -> bool:
        return self.action == CUT


@dataclass(frozen=True)
class AttemptResult:
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: str  # confirmed | mismatch | timeout | exception | connection
    relay_open: bool | None = None
    exception_code: int | None = None
    detail: str = ""


def load_gateways(engine: Engine) -> list[GatewaySpec]:
    with transaction(engine, read_only=True) as s:
        gateways = s.exec(select(Gateway).order_by(Gateway.id)).all()
        meters = s.exec(select(Meter).order_by(Meter.gateway_id, Meter.unit_id)).all()
    by_gateway: dict[int, list[MeterSpec]] = {}
    for m in meters:
        by_gateway.setdefault(m.gateway_id, []).append(MeterSpec(m.id, m.unit_id))
    return [GatewaySpec(g.id, g.name, g.host, g.port, tuple(by_gateway.get(g.id, ())))
            for g in gateways]


def due_commands(engine: Engine, gateway_id: int, now: dt.datetime | None = None) -> list[DueCommand]:
    """Pending commands of one gateway whose next attempt is due: restores first, oldest first."""
    now = now or utcnow()
    with transaction(engine, read_only=True) as s:
        rows = s.exec(
            select(Command, Meter.unit_id)
            .join(Meter, Meter.id == Command.meter_id)
            .where(Meter.gateway_id == gateway_id, Command.state == PENDING,
                   Command.next_attempt_at <= now)
            .order_by(case((Command.action == RESTORE, 0), else_=1), Command.id)
        ).all()
    return [DueCommand(c.id, c.meter_id, unit, c.action, c.attempts) for c, unit in rows]


def record_attempt(engine: Engine, command_id: int, result: AttemptResult) -> str:
    """Store one attempt's evidence and move the command on; returns the command's new state.

    Only `confirmed` (the relay read back in the wanted state) completes a command. Anything
    else schedules a retry with exponential back-off, until the command's expiry.
    """
    with transaction(engine) as s:
        command = s.get(Command, command_id, with_for_update=True)
        s.add(CommandAttempt(command_id=command_id, started_at=result.started_at,
                             finished_at=result.finished_at, outcome=result.outcome,
                             exception_code=result.exception_code,
                             relay_open=result.relay_open, detail=result.detail[:500]))
        if command.state != PENDING:  # cancelled meanwhile: keep the evidence only
            return command.state
        command.attempts += 1
        meter = s.get(Meter, command.meter_id)
        if result.relay_open is not None:
            meter.relay_open = result.relay_open
            meter.online = True
        elif result.outcome in ("timeout", "exception", "connection"):
            meter.online = False
        s.add(meter)
        now = result.finished_at
        if result.outcome == CONFIRMED:
            command.state = DONE
            command.completed_at = now
            if meter.account_id is not None:
                kind = POWER_CUT if command.action == CUT else POWER_RESTORED
                s.add(Notice(account_id=meter.account_id, kind=kind))
        elif now >= command.expires_at:
            command.state = EXPIRED
            command.completed_at = now
        else:
            backoff = min(MAX_BACKOFF_S, 0.5 * 2 ** min(command.attempts - 1, 10))
            command.next_attempt_at = min(now + dt.timedelta(seconds=backoff), command.expires_at)
        s.add(command)
        return command.state


def record_reading(engine: Engine, meter_id: int, energy_wh: int, relay_open: bool,
                   read_at: dt.datetime) -> None:
    """Store a poll's result: charge the consumption since the last reading and queue a cut
    when the balance is exhausted, in one transaction."""
    with transaction(engine) as s:
        meter = s.get(Meter, meter_id, with_for_update=True)
        previous_wh = meter.last_energy_wh
        changed = previous_wh != energy_wh or meter.relay_open != relay_open
        account = s.get(Account, meter.account_id) if meter.account_id else None
        if account is not None and previous_wh is not None and energy_wh > previous_wh:
            post_consumption(s, meter, account, previous_wh, energy_wh)
        if previous_wh is None or energy_wh >= previous_wh:
            meter.last_energy_wh = energy_wh  # a register that went back is never charged twice
        meter.relay_open = relay_open
        meter.last_read_at = read_at
        meter.online = True
        s.add(meter)
        if changed:
            s.add(Reading(meter_id=meter.id, read_at=read_at, energy_wh=energy_wh,
                          relay_open=relay_open))
        if account is not None:
            cut_if_exhausted(s, meter, account)


def record_poll_failure(engine: Engine, meter_id: int) -> None:
    with transaction(engine) as s:
        meter = s.get(Meter, meter_id)
        if meter.online:
            meter.online = False
            s.add(meter)
