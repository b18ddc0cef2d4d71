"""A command the meter confirms is done, whatever the clock (issue 18, defect 1): the attempt
scheduled at `expires_at` races the expiry sweep; when the sweep wins, the confirmation that
follows still makes the command done, writes its notice and closes the expiry's anomaly."""

from __future__ import annotations

import datetime as dt

from sqlmodel import select

from app.anomalies.models import COMMAND_EXPIRED, Anomaly
from app.commands.models import DONE, EXPIRED, Command
from app.commands.services import queue_cut
from app.db import transaction, utcnow
from app.estate.models import Meter
from app.notices.models import POWER_CUT, Notice
from meters.store import (CONFIRMED, AttemptResult, expire_overdue_commands,
                          record_attempt)
from tests.factories import EstateFactory


def _cut(engine) -> tuple[int, dt.datetime]:
    estate = EstateFactory(engine)
    number = estate.account(gateway_id=estate.gateway("127.0.0.1", 1), unit_id=1,
                            balance_fen=-500)
    with transaction(engine) as s:
        meter = s.exec(select(Meter)).one()
        command = queue_cut(s, meter, "exhausted")
        return command.id, command.expires_at


def test_a_confirmation_after_the_sweep_expired_it_makes_it_done(engine):
    command_id, expires_at = _cut(engine)
    assert expire_overdue_commands(engine, now=expires_at) == 1  # the sweep wins the race
    state = record_attempt(engine, command_id, AttemptResult(
        expires_at - dt.timedelta(seconds=1), expires_at, CONFIRMED, relay_open=True))
    assert state == DONE
    with transaction(engine, read_only=True) as s:
        assert s.get(Command, command_id).state == DONE
        [anomaly] = s.exec(select(Anomaly).where(Anomaly.kind == COMMAND_EXPIRED)).all()
        assert anomaly.resolved_at is not None and "confirmed" in anomaly.resolution
        assert [n.kind for n in s.exec(select(Notice))] == [POWER_CUT]
        assert s.exec(select(Meter)).one().relay_open is True


def test_a_failed_attempt_after_expiry_changes_nothing(engine):
    command_id, expires_at = _cut(engine)
    expire_overdue_commands(engine, now=expires_at)
    assert record_attempt(engine, command_id, AttemptResult(
        expires_at, expires_at + dt.timedelta(seconds=1), "timeout")) == EXPIRED
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(Anomaly)).one().resolved_at is None
        assert s.exec(select(Notice)).all() == []
