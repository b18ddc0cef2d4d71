"""Charges priced by the account's stored tariff: tiers by cycle energy, time-of-use periods from
the meter's registers or by time, versions splitting an interval, idempotency kept."""

import datetime as dt
from pathlib import Path

import pytest
from sqlmodel import select

from app.db import transaction
from app.estate.models import Account, Meter
from app.tariffs import TariffError
from app.tariffs.store import add_tariff
from app.billing.services import post_consumption
from tests.factories import EstateFactory, add_tariff as make_tariff, entries_of

EXAMPLES = Path(__file__).parent.parent / "tariffs" / "examples"
BEIJING = (EXAMPLES / "beijing_tiered.json").read_text()
ZHEJIANG = (EXAMPLES / "zhejiang_tiered_tou.json").read_text()
UTC = dt.timezone.utc


def at(local: str) -> dt.datetime:
    """A China-time wall clock "2026-11-05 21:00" as an aware UTC datetime."""
    return (dt.datetime.fromisoformat(local) - dt.timedelta(hours=8)).replace(tzinfo=UTC)


@pytest.fixture
def household(engine):
    """Make an account with a tariff; returns a function charging it, and its 户号."""
    estate = EstateFactory(engine)
    gateway = estate.gateway("127.0.0.1", 1)

    def make(tariff_id, **fields):
        number = estate.account(gateway_id=gateway, unit_id=estate._count + 1,
                                tariff_id=tariff_id, **fields)

        def charge(wh, start, end, interval, deltas=None):
            with transaction(engine) as s:
                account = s.exec(select(Account).where(Account.number == number)).one()
                meter = s.exec(select(Meter).where(Meter.account_id == account.id)).one()
                return post_consumption(s, meter, account, wh, interval=interval,
                                        start_at=at(start), end_at=at(end),
                                        period_deltas_wh=deltas, every_reading=True)
        return number, charge
    return make


def account(engine, number):
    with transaction(engine) as s:
        return s.exec(select(Account).where(Account.number == number)).one()


def test_an_account_opened_mid_month_starts_from_its_opening_figure(engine, household):
    tariff = make_tariff(engine, "北京居民", ("2020-01-01", BEIJING))
    number, charge = household(tariff, cycle_wh=239_000, cycle_opening_wh=239_000)
    # 1 kWh left in 第一档 (0.4883), 1 kWh in 第二档 (0.5383): 1.0266 元 → 103 fen
    assert charge(2000, "2026-11-05 10:00", "2026-11-05 11:00", "0:2000") == 103
    assert account(engine, number).cycle_wh == 241_000
    assert "第1档" in entries_of(engine, number, "charge")[0].memo


def test_a_new_month_restarts_the_monthly_cycle(engine, household):
    tariff = make_tariff(engine, "北京居民", ("2020-01-01", BEIJING))
    number, charge = household(tariff, cycle_start=dt.date(2026, 10, 1), cycle_wh=500_000)
    assert charge(1000, "2026-11-01 01:00", "2026-11-01 02:00", "0:1000") == 49  # 0.4883
    assert (account(engine, number).cycle_start, account(engine, number).cycle_wh) == \
        (dt.date(2026, 11, 1), 1000)


def test_an_interval_across_the_new_month_counts_only_its_tail_in_the_new_cycle(engine, household):
    tariff = make_tariff(engine, "北京居民", ("2020-01-01", BEIJING))
    number, charge = household(tariff, cycle_start=dt.date(2026, 10, 1), cycle_wh=500_000)
    # half before midnight at 0.7883 (第三档), half after at 0.4883: 0.6383 元
    assert charge(1000, "2026-10-31 23:00", "2026-11-01 01:00", "0:1000") == 64
    assert account(engine, number).cycle_wh == 500


def test_time_of_use_from_the_period_registers(engine, household):
    tariff = make_tariff(engine, "浙江居民", ("2020-01-01", ZHEJIANG))
    number, charge = household(tariff)
    # spike, peak, flat, valley: 1 kWh peak 0.568 + 1 kWh valley 0.288 = 0.856 元
    assert charge(2000, "2026-11-05 06:00", "2026-11-05 09:00", "0:2000", (0, 1000, 0, 1000)) == 86
    assert "by time" not in entries_of(engine, number, "charge")[0].memo


def test_time_of_use_by_time_across_a_period_boundary_says_so(engine, household):
    tariff = make_tariff(engine, "浙江居民", ("2020-01-01", ZHEJIANG))
    number, charge = household(tariff)
    # 21:00–23:00 with no registers: 1 kWh peak (to 22:00), 1 kWh valley
    assert charge(2000, "2026-11-05 21:00", "2026-11-05 23:00", "0:2000") == 86
    assert "periods shared by time" in entries_of(engine, number, "charge")[0].memo


def test_registers_that_disagree_with_the_total_fall_back_to_time(engine, household):
    tariff = make_tariff(engine, "浙江居民", ("2020-01-01", ZHEJIANG))
    number, charge = household(tariff)
    assert charge(2000, "2026-11-05 21:00", "2026-11-05 23:00", "0:2000", (0, 0, 0, 0)) == 86
    assert "periods shared by time" in entries_of(engine, number, "charge")[0].memo


def test_a_price_change_splits_the_interval_at_local_midnight(engine, household):
    tariff = make_tariff(engine, "调价", ("2020-01-01", '{"kind": "flat", "price": "0.5"}'),
                         ("2026-11-05", '{"kind": "flat", "price": "0.6"}'))
    number, charge = household(tariff)
    assert charge(2000, "2026-11-04 23:00", "2026-11-05 01:00", "0:2000") == 110


def test_the_same_reading_stored_twice_charges_once_and_counts_the_cycle_once(engine, household):
    from meters.store import ReadingResult, record_readings
    from tests.factories import balance_of, meter_of

    tariff = make_tariff(engine, "北京居民", ("2020-01-01", BEIJING))
    number, _charge = household(tariff)
    meter_id = meter_of(engine, number).id
    record_readings(engine, [ReadingResult(meter_id, 5_000, False, at("2026-11-05 10:00"))])
    reading = ReadingResult(meter_id, 6_000, False, at("2026-11-05 11:00"))
    record_readings(engine, [reading])
    record_readings(engine, [reading])  # stored again (a retried batch): charges nothing
    assert account(engine, number).cycle_wh == 1000
    assert balance_of(engine, number) == -49  # 1 kWh × 0.4883, accrued
    record_readings(engine, [ReadingResult(meter_id, 6_000, False, at("2026-11-05 12:30"))])
    assert balance_of(engine, number) == -49


def test_an_invalid_tariff_is_not_saved(engine):
    with pytest.raises(TariffError), transaction(engine) as s:
        add_tariff(s, "坏的", '{"kind": "flat"}')


def test_an_interval_across_a_season_change_is_shared_by_time(engine, household):
    three = (EXAMPLES / "tou_three_periods.json").read_text()  # summer (Jul–Aug) adds a spike
    number, charge = household(make_tariff(engine, "三时段", ("2020-01-01", three)))
    # 23:00–01:00 is valley on both sides: 2 kWh × 0.30, the registers not used across months
    assert charge(2000, "2026-08-31 23:00", "2026-09-01 01:00", "0:2000", (1000, 0, 0, 1000)) == 60
    assert "periods shared by time" in entries_of(engine, number, "charge")[0].memo


def test_energy_no_tariff_version_can_price_becomes_an_anomaly_not_a_stuck_batch(engine):
    from app.anomalies.models import Anomaly
    from meters.store import UNPRICED_ENERGY, ReadingResult, record_readings

    estate = EstateFactory(engine)
    later = make_tariff(engine, "明年", ("2030-01-01", '{"kind": "flat", "price": "0.5"}'))
    number = estate.account(gateway_id=estate.gateway("127.0.0.1", 1), unit_id=1, tariff_id=later,
                            max_power_w=10**9)
    with transaction(engine) as s:
        meter_id = s.exec(select(Meter.id)).one()
    record_readings(engine, [ReadingResult(meter_id, 1000, False, at("2026-11-05 10:00"))])
    record_readings(engine, [ReadingResult(meter_id, 3000, False, at("2026-11-05 11:00"))])
    with transaction(engine) as s:
        anomaly = s.exec(select(Anomaly)).one()
        assert (anomaly.kind, anomaly.energy_wh) == (UNPRICED_ENERGY, 2000)
        assert s.get(Meter, meter_id).last_energy_wh == 3000
    assert entries_of(engine, number, "charge") == []
