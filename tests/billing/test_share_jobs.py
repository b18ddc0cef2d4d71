"""The billing jobs post each building's common-area shares by itself: every ended local day (or
month), from the first common reading on, once, catching up after an outage."""

import datetime as dt
from decimal import Decimal

from sqlmodel import select

from app.billing.jobs import SHARE_DELAY, due_periods, period_containing, share_due
from app.db import transaction
from app.estate.models import Building, ShareRun
from tests.factories import (EstateFactory, common_meter, entries_of, set_building,
                             store_readings)

UTC = dt.timezone.utc
LONG_AGO = dt.datetime(2026, 1, 1, tzinfo=UTC)
# Local (China time) days: 2026-11-21 is [11-20 16:00, 11-21 16:00) UTC.
D21 = dt.datetime(2026, 11, 20, 16, tzinfo=UTC)
D22 = D21 + dt.timedelta(days=1)
D23 = D22 + dt.timedelta(days=1)


def make_building(engine, readings_kwh):
    """A building with two households of 60 and 90 m² and a common meter with the readings
    [(UTC time, kWh)]; returns (estate, the two 户号)."""
    estate = EstateFactory(engine)
    gateway = estate.gateway("127.0.0.1", 1)
    meter_id = common_meter(engine, building_id=estate.building_id, gateway_id=gateway,
                            unit_id=99)
    store_readings(engine, meter_id, [(when, kwh * 1000) for when, kwh in readings_kwh])
    numbers = [estate.account(gateway_id=gateway, unit_id=u, created_at=LONG_AGO,
                              number=f"S{estate.building_id}-{u}",
                              floor_area_m2=Decimal(area))
               for u, area in ((1, "60"), (2, "90"))]
    return estate, numbers


def runs(engine):
    with transaction(engine, read_only=True) as s:
        return [(r.period_start, r.period_end, r.charge_fen)
                for r in s.exec(select(ShareRun).order_by(ShareRun.period_start))]


def test_period_containing_is_the_local_day_or_month():
    assert period_containing(D21 + dt.timedelta(hours=3), "day") == (D21, D22)
    assert period_containing(D21, "month") == (dt.datetime(2026, 10, 31, 16, tzinfo=UTC),
                                              dt.datetime(2026, 11, 30, 16, tzinfo=UTC))
    assert period_containing(dt.datetime(2026, 12, 15, tzinfo=UTC), "month")[1] == \
        dt.datetime(2026, 12, 31, 16, tzinfo=UTC)  # December ends in January


def test_each_ended_day_is_shared_once_by_area(engine):
    # 10 kWh on the 21st, 20 kWh on the 22nd, at the building's 0.5583 元/kWh
    estate, (small, large) = make_building(engine, [
        (D21 + dt.timedelta(minutes=5), 0), (D22 - dt.timedelta(minutes=1), 10),
        (D23 - dt.timedelta(minutes=1), 30)])
    now = D23 + SHARE_DELAY
    posted = share_due(engine, now)
    assert [(r.period_start, r.charge_fen) for r in posted] == [(D21, 558), (D22, 1117)]
    # 60 : 90 of each day's charge, to the fen, summing exactly
    assert [-e.amount_fen for e in entries_of(engine, small, "share")] == [223, 447]
    assert [-e.amount_fen for e in entries_of(engine, large, "share")] == [335, 670]
    assert share_due(engine, now + dt.timedelta(hours=1)) == []  # nothing new: nothing posted
    assert len(runs(engine)) == 2


def test_a_day_is_not_shared_before_it_ended_and_the_delay_passed(engine):
    make_building(engine, [(D21 + dt.timedelta(minutes=5), 0),
                           (D22 - dt.timedelta(minutes=1), 10)])
    assert share_due(engine, D22 + SHARE_DELAY - dt.timedelta(seconds=1)) == []
    assert [r[0] for r in runs(engine)] == []
    assert [r.period_start for r in share_due(engine, D22 + SHARE_DELAY)] == [D21]


def test_monthly_buildings_are_shared_once_a_month(engine):
    estate, (small, large) = make_building(engine, [
        (dt.datetime(2026, 10, 31, 17, tzinfo=UTC), 0), (D21, 100),
        (dt.datetime(2026, 11, 30, 15, tzinfo=UTC), 200)])
    set_building(engine, estate.building_id, share_period="month")
    assert share_due(engine, D23) == []  # November has not ended
    december = dt.datetime(2026, 11, 30, 16, tzinfo=UTC) + SHARE_DELAY
    [run] = share_due(engine, december)
    assert (run.period_start, run.energy_wh, run.charge_fen) == (
        dt.datetime(2026, 10, 31, 16, tzinfo=UTC), 200_000, 11166)
    assert sum(-e.amount_fen for n in (small, large) for e in entries_of(engine, n, "share")) \
        == 11166


def test_a_long_outage_is_caught_up_in_order_and_a_switch_to_monthly_goes_on_from_there(engine):
    estate, _ = make_building(engine, [(D21 + dt.timedelta(minutes=5), 0)])
    with transaction(engine, read_only=True) as s:
        building = s.get(Building, estate.building_id)
        assert len(due_periods(s, building, D21 + dt.timedelta(days=100), limit=5)) == 5
    share_due(engine, D23 + SHARE_DELAY)
    assert [r[0] for r in runs(engine)] == [D21, D22]
    set_building(engine, estate.building_id, share_period="month")
    [run] = share_due(engine, dt.datetime(2026, 12, 1, tzinfo=UTC))
    assert (run.period_start, run.period_end) == (D23, dt.datetime(2026, 11, 30, 16, tzinfo=UTC))


def test_a_building_without_common_meters_is_not_shared(engine):
    estate = EstateFactory(engine)
    estate.account(gateway_id=estate.gateway("127.0.0.1", 1), unit_id=1)
    assert share_due(engine, D23) == [] and runs(engine) == []


def test_buildings_due_together_are_shared_together_and_one_that_cannot_be_does_not_stop_them(
        engine):
    ok, (small, _large) = make_building(engine, [(D21 + dt.timedelta(minutes=5), 0),
                                                 (D22 - dt.timedelta(minutes=1), 10)])
    bad, _ = make_building(engine, [(D21 + dt.timedelta(minutes=5), 0),
                                    (D22 - dt.timedelta(minutes=1), 10)])
    set_building(engine, bad.building_id, share_scheme="nonsense")
    posted = share_due(engine, D22 + SHARE_DELAY)
    assert [(r.building_id, r.charge_fen) for r in posted] == [(ok.building_id, 558)]
    assert [-e.amount_fen for e in entries_of(engine, small, "share")] == [223]
