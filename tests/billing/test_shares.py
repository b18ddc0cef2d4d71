"""公摊: the common-area charge split by the building's scheme, to the fen, once per period."""

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st
from sqlmodel import select

from app.billing.shares import ShareError, largest_remainder, period_label, post_shares
from app.db import transaction
from app.estate.models import Account, Building, ShareRun
from tests.factories import (EstateFactory, common_meter, entries_of, set_building,
                             store_readings)

UTC = dt.timezone.utc
DAY = (dt.datetime(2026, 11, 21, 16, tzinfo=UTC), dt.datetime(2026, 11, 22, 16, tzinfo=UTC))
LONG_AGO = dt.datetime(2026, 1, 1, tzinfo=UTC)


@given(st.integers(0, 10**9), st.lists(st.integers(0, 10**7), min_size=1, max_size=300)
       .filter(lambda ws: any(ws)))
def test_shares_sum_exactly_to_the_charge(total, weights):
    shares = largest_remainder(total, weights)
    assert sum(shares) == total and all(s >= 0 for s in shares)
    whole = sum(weights)  # each share within one fen of its exact part
    assert all(abs(s * whole - total * w) < whole for s, w in zip(shares, weights))


@given(st.integers(0, 10**6), st.lists(st.decimals("0", "500", places=2), min_size=1,
                                       max_size=60).filter(lambda xs: any(xs)))
def test_area_shares_sum_exactly_for_any_areas(total, areas):
    shares = largest_remainder(total, [int(a * 100) for a in areas])
    assert sum(shares) == total


def test_ties_go_to_the_first_household():
    assert largest_remainder(100, [1, 1, 1]) == [34, 33, 33]


def test_period_labels():
    assert period_label(*DAY) == "2026-11-22"
    assert period_label(dt.datetime(2026, 10, 31, 16, tzinfo=UTC),
                        dt.datetime(2026, 11, 30, 16, tzinfo=UTC)) == "2026-11"


@pytest.fixture
def building(engine):
    """A building with a common-area meter reading 0 then 10 kWh over DAY, and households."""
    estate = EstateFactory(engine)
    gateway = estate.gateway("127.0.0.1", 1)
    meter_id = common_meter(engine, building_id=estate.building_id, gateway_id=gateway,
                            unit_id=99)
    store_readings(engine, meter_id, [(DAY[0] - dt.timedelta(minutes=1), 0),
                                      (DAY[1] - dt.timedelta(minutes=1), 10_000)])
    estate.unit = 0

    def household(area="90", **fields):
        estate.unit += 1
        number = estate.account(gateway_id=gateway, unit_id=estate.unit,
                                created_at=fields.pop("created_at", LONG_AGO), **fields)
        with transaction(engine) as s:  # the factory's area is 89.5; set this one's
            account = s.exec(select(Account).where(Account.number == number)).one()
            account.floor_area_m2 = Decimal(area)
            s.add(account)
        return number

    estate.household = household
    return estate


def share(engine, building_id, period=DAY):
    with transaction(engine) as s:
        return post_shares(s, s.get(Building, building_id), *period)


def share_fen(engine, number):
    return [-e.amount_fen for e in entries_of(engine, number, "share")]


def test_by_floor_area_the_shares_sum_to_the_common_charge(engine, building):
    a, b, c = (building.household(area) for area in ("60", "90", "150"))
    set_building(engine, building.building_id, common_price_yuan_per_kwh=Decimal("0.5583"))
    run = share(engine, building.building_id)  # 10 kWh × 0.5583 = 5.583 元 → 558 fen
    assert (run.energy_wh, run.charge_fen) == (10_000, 558)
    assert share_fen(engine, a) + share_fen(engine, b) + share_fen(engine, c) == [112, 167, 279]
    assert "按面积 面积 60 m²" in entries_of(engine, a, "share")[0].memo


def test_equal_shares(engine, building):
    numbers = [building.household() for _ in range(3)]
    set_building(engine, building.building_id, share_scheme="equal")
    share(engine, building.building_id)
    assert [share_fen(engine, n) for n in numbers] == [[186], [186], [186]]


def test_a_period_is_shared_once(engine, building):
    number = building.household()
    assert share(engine, building.building_id) is not None
    assert share(engine, building.building_id) is None
    assert share_fen(engine, number) == [558]


def test_an_overlapping_period_is_refused(engine, building):
    building.household()
    share(engine, building.building_id)
    with pytest.raises(ShareError):
        share(engine, building.building_id, (DAY[0] + dt.timedelta(hours=1), DAY[1]))


def test_an_account_closed_mid_period_pays_for_the_time_it_was_open(engine, building):
    stays = building.household()
    leaves = building.household(closed_at=DAY[0] + dt.timedelta(hours=6))
    share(engine, building.building_id)
    assert (share_fen(engine, stays), share_fen(engine, leaves)) == ([446], [112])
    assert "在户 21600/86400 s" in entries_of(engine, leaves, "share")[0].memo


def test_an_account_opened_after_the_period_pays_nothing(engine, building):
    old = building.household()
    new = building.household(created_at=DAY[1] + dt.timedelta(hours=1))
    share(engine, building.building_id)
    assert (share_fen(engine, old), share_fen(engine, new)) == ([558], [])


def test_by_usage_with_no_use_at_all_falls_back_to_area(engine, building):
    a, b = building.household("100"), building.household("300")
    set_building(engine, building.building_id, share_scheme="usage")
    run = share(engine, building.building_id)
    assert run.scheme == "area"
    assert (share_fen(engine, a), share_fen(engine, b)) == ([140], [418])


def test_the_sub_fen_remainder_carries_to_the_next_period(engine, building):
    building.household()
    set_building(engine, building.building_id, common_price_yuan_per_kwh=Decimal("0.0001"))
    fen = []
    for day in range(3):  # 0.004 元 a day would be 0 fen each if rounded per period
        start = DAY[0] + dt.timedelta(days=day)
        with transaction(engine) as s:
            fen.append(post_shares(s, s.get(Building, building.building_id), start,
                                   start + dt.timedelta(days=1), energy_wh=40_000).charge_fen)
    assert fen == [0, 1, 0]
