"""Queueing commands: one pending per meter and action, and a restore always wins."""

from sqlmodel import select

from app.commands.models import CANCELLED, CUT, PENDING, RESTORE, Command
from app.commands.services import power_state, queue_cut, queue_restore
from app.db import transaction
from app.estate.models import Meter
from tests.factories import EstateFactory, account_by_number, meter_of


def states(engine):
    with transaction(engine, read_only=True) as s:
        return [(c.action, c.state) for c in s.exec(select(Command).order_by(Command.id))]


def test_restore_cancels_a_pending_cut_and_a_cut_waits_behind_a_restore(engine):
    estate = EstateFactory(engine)
    number = estate.account(gateway_id=estate.gateway("127.0.0.1", 1), unit_id=1)
    meter_id = meter_of(engine, number).id
    with transaction(engine) as s:
        assert queue_cut(s, s.get(Meter, meter_id), "balance exhausted") is not None
    with transaction(engine) as s:
        queue_restore(s, s.get(Meter, meter_id), "payment")
        queue_restore(s, s.get(Meter, meter_id), "payment again")  # reuses the pending one
        assert queue_cut(s, s.get(Meter, meter_id), "balance exhausted") is None
    assert states(engine) == [(CUT, CANCELLED), (RESTORE, PENDING)]


def test_power_state_reads_restoring_while_a_restore_is_pending(engine):
    estate = EstateFactory(engine)
    number = estate.account(gateway_id=estate.gateway("127.0.0.1", 1), unit_id=1, relay_open=True)
    account_id, meter_id = account_by_number(engine, number).id, meter_of(engine, number).id
    with transaction(engine) as s:
        assert power_state(s, account_id) == "off"
        queue_restore(s, s.get(Meter, meter_id), "payment")
        assert power_state(s, account_id) == "restoring"
