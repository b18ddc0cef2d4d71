"""Readings rolled up as the worker stores them: each meter's days (frozen registers, energy,
96-point curve), its relay changes; raw readings dropped after the retention period, the
common-area shares still measured; the migration builds the same days from old readings."""

import datetime as dt

from alembic import command
from sqlmodel import select

from app.billing.shares import common_energies_wh
from app.commands.services import queue_cut
from app.db import transaction
from app.estate.models import DailyFrozen, Meter, Reading, RelayChange
from app.estate.rollup import drop_old_readings, parse_curve
from app.migrate import alembic_config, upgrade
from meters.store import AttemptResult, ReadingResult, record_attempt, record_readings
from tests.factories import EstateFactory, common_meter, meter_of, store_readings

CHINA = dt.timezone(dt.timedelta(hours=8))


def local(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=CHINA).astimezone(dt.timezone.utc)


def days(engine, meter_id: int) -> list[DailyFrozen]:
    with transaction(engine, read_only=True) as s:
        return list(s.exec(select(DailyFrozen).where(DailyFrozen.meter_id == meter_id)
                           .order_by(DailyFrozen.day)))


def household(engine, **fields) -> int:
    estate = EstateFactory(engine)
    number = estate.account(gateway_id=estate.gateway("127.0.0.1", 1), unit_id=1,
                            balance_fen=10_000, **fields)
    return meter_of(engine, number).id


def test_a_meter_s_days_carry_its_registers_its_energy_and_its_curve(engine):
    meter_id = household(engine)
    polls = [("2026-11-05 23:50", 1_000, (10, 20, 30, 40)),  # the first reading: nothing used
             ("2026-11-06 00:07", 1_120, (10, 20, 31, 41)),  # quarter 0 of the 6th
             ("2026-11-06 00:14", 1_150, (10, 20, 32, 41)),  # quarter 0 again
             ("2026-11-06 08:00", 1_150, (10, 20, 32, 41)),  # unchanged: no energy, no row
             ("2026-11-06 08:20", 1_400, (10, 22, 32, 41))]  # quarter 33
    for at, wh, periods in polls[:3]:  # one batch, then another: the day's row is merged
        record_readings(engine, [ReadingResult(meter_id, wh, False, local(at), periods)])
    record_readings(engine, [ReadingResult(meter_id, wh, False, local(at), periods)
                             for at, wh, periods in polls[3:]])
    first, second = days(engine, meter_id)
    assert (first.day, first.opening_wh, first.register_wh, first.used_wh) == (
        dt.date(2026, 11, 5), 1_000, 1_000, 0)
    assert (second.day, second.opening_wh, second.register_wh, second.used_wh) == (
        dt.date(2026, 11, 6), 1_120, 1_400, 400)
    curve = parse_curve(second.curve)
    assert (curve[0], curve[33], sum(curve)) == (150, 250, 400)
    assert (second.spike_wh, second.peak_wh, second.flat_wh, second.valley_wh) == (
        100, 220, 320, 410)
    assert second.read_at == local("2026-11-06 08:20")


def test_energy_the_worker_does_not_believe_moves_the_register_not_the_energy(engine):
    meter_id = household(engine)  # a 13.8 kW breaker: 50 kWh in 5 minutes is a jump
    store_readings(engine, meter_id, [(local("2026-11-06 10:00"), 1_000),
                                      (local("2026-11-06 10:05"), 51_000),
                                      (local("2026-11-06 11:05"), 52_000)])
    [day] = days(engine, meter_id)
    assert (day.register_wh, day.used_wh) == (52_000, 1_000)


def test_relay_changes_are_kept_from_readings_and_from_command_read_backs(engine):
    meter_id = household(engine)
    record_readings(engine, [ReadingResult(meter_id, 1_000, False, local("2026-11-06 10:00"))])
    with transaction(engine) as s:
        cut = queue_cut(s, s.get(Meter, meter_id), "test")
        s.flush()
        cut_id = cut.id
    record_attempt(engine, cut_id, AttemptResult(local("2026-11-06 10:01"),
                                                 local("2026-11-06 10:01:01"), "confirmed",
                                                 relay_open=True))
    record_readings(engine, [ReadingResult(meter_id, 1_000, True, local("2026-11-06 10:02")),
                             ReadingResult(meter_id, 1_000, False, local("2026-11-06 11:00"))])
    with transaction(engine, read_only=True) as s:
        changes = [(c.at, c.relay_open, c.source) for c in s.exec(
            select(RelayChange).where(RelayChange.meter_id == meter_id).order_by(RelayChange.id))]
    assert changes == [(local("2026-11-06 10:01:01"), True, "command"),
                       (local("2026-11-06 11:00"), False, "reading")]


def test_old_raw_readings_go_and_a_month_s_common_energy_stays(engine):
    estate = EstateFactory(engine)
    meter_id = common_meter(engine, building_id=estate.building_id,
                            gateway_id=estate.gateway("127.0.0.1", 1), unit_id=9)
    store_readings(engine, meter_id, [(local(f"2026-10-{d:02d} 12:00"), 1_000 * d)
                                      for d in range(1, 32)] + [(local("2026-11-01 00:00"), 40_000)])
    month = (local("2026-10-01 00:00"), local("2026-11-01 00:00"))
    with transaction(engine, read_only=True) as s:
        before = common_energies_wh(s, [estate.building_id], *month)
    dropped = drop_old_readings(engine, local("2026-11-20 00:00"), 7)
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(Reading)).all() == []
        after = common_energies_wh(s, [estate.building_id], *month)
    assert dropped == 32
    assert before == after == {estate.building_id: 30_000}  # 1 Oct 12:00 to 31 Oct 12:00


def test_retention_keeps_the_recent_readings(engine):
    meter_id = household(engine)
    store_readings(engine, meter_id, [(local("2026-11-01 10:00"), 1_000),
                                      (local("2026-11-10 10:00"), 2_000)])
    assert drop_old_readings(engine, local("2026-11-12 00:00"), 7) == 1
    assert drop_old_readings(engine, local("2026-11-12 00:00"), 0) == 0
    with transaction(engine, read_only=True) as s:
        assert [r.energy_wh for r in s.exec(select(Reading))] == [2_000]


def test_the_migration_builds_the_days_the_worker_builds(engine, database_url):
    meter_id = household(engine, max_power_w=10**9)
    store_readings(engine, meter_id, [(local("2026-11-05 22:00") + dt.timedelta(minutes=7 * k),
                                       1_000 + 13 * k * k) for k in range(400)])
    built = [(d.day, d.opening_wh, d.register_wh, d.read_at, d.used_wh, d.curve)
             for d in days(engine, meter_id)]
    engine.dispose()
    command.downgrade(alembic_config(database_url), "0010")
    upgrade(database_url)
    migrated = [(d.day, d.opening_wh, d.register_wh, d.read_at, d.used_wh, d.curve)
                for d in days(engine, meter_id)]
    assert len(built) == 3 and migrated == built
