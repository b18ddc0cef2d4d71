"""A reading taken before a cut's read-back but stored after it (readings wait in a batch; an
attempt is written at once) must not put the older "supply on" back on the meter: that would
make the worker cut the household a second time and send a second cut notice."""

import datetime as dt

from sqlmodel import select

from app.commands.models import CUT, DONE, Command
from app.commands.services import queue_cut
from app.db import transaction, utcnow
from app.estate.models import Meter
from meters.store import AttemptResult, ReadingResult, record_attempt, record_readings
from tests.factories import EstateFactory, meter_of


def cuts(engine) -> list[Command]:
    with transaction(engine, read_only=True) as s:
        return list(s.exec(select(Command).where(Command.action == CUT).order_by(Command.id)))


def test_a_stale_reading_stored_after_a_cut_does_not_undo_it(engine):
    estate = EstateFactory(engine)
    number = estate.account(gateway_id=estate.gateway("127.0.0.1", 1), unit_id=1,
                            balance_fen=-500, relay_open=False)
    meter = meter_of(engine, number)
    with transaction(engine) as s:
        cut = queue_cut(s, s.get(Meter, meter.id), "test")
        s.flush()
        cut_id = cut.id
    read_at = utcnow()  # the poll read "supply on" just before the cut went out
    confirmed = read_at + dt.timedelta(milliseconds=300)
    assert record_attempt(engine, cut_id, AttemptResult(read_at, confirmed, "confirmed",
                                                        relay_open=True)) == DONE

    record_readings(engine, [ReadingResult(meter.id, 1_000, False, read_at)])  # stored late

    after = meter_of(engine, number)
    assert after.relay_open is True and after.relay_read_at == confirmed
    assert after.last_read_at == read_at and after.last_energy_wh == 1_000
    assert [c.state for c in cuts(engine)] == [DONE]  # no second cut queued

    later = confirmed + dt.timedelta(seconds=5)  # a newer reading is believed again
    record_readings(engine, [ReadingResult(meter.id, 1_000, True, later)])
    assert meter_of(engine, number).relay_read_at == later
