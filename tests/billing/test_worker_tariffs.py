"""The worker against the simulator, with tariffs: the period registers read over Modbus price
the energy; without a usable register the periods are shared by time, and the entry says so."""

import datetime as dt
from pathlib import Path

from app.billing.services import post_stale_accruals
from app.db import utcnow

from tests.conftest import wait_until
from tests.factories import add_tariff, balance_of, entries_of, meter_of

EXAMPLES = Path(__file__).parent.parent / "tariffs" / "examples"


def test_the_flat_register_prices_a_three_period_tariff(stack, engine):
    tariff = add_tariff(engine, "三时段", ("2020-01-01", (EXAMPLES / "tou_three_periods.json")
                                          .read_text()))
    sim = stack.start_sim([[1]])
    number = stack.household(1, balance_fen=10_000, tariff_id=tariff, max_power_w=10**9)
    stack.start_worker()
    wait_until(lambda: meter_of(engine, number).last_period_raw is not None, message="no reading")

    sim.meter(0, 1).add_energy_wh(2_000)  # the simulator counts it all in 平: 2 kWh × 0.5
    wait_until(lambda: balance_of(engine, number) == 10_000 - 100, message="charge not accrued")
    post_stale_accruals(engine, utcnow() + dt.timedelta(hours=1))  # the hour is over
    assert "flat 2000 Wh × 0.5000" in entries_of(engine, number, "charge")[0].memo


def test_without_a_matching_register_the_periods_are_shared_by_time(stack, engine):
    tariff = add_tariff(engine, "峰谷", ("2020-01-01", (EXAMPLES / "zhejiang_tiered_tou.json")
                                        .read_text()))
    sim = stack.start_sim([[1]])
    number = stack.household(1, balance_fen=10_000, tariff_id=tariff, max_power_w=10**9)
    stack.start_worker()
    wait_until(lambda: meter_of(engine, number).last_energy_wh is not None, message="no reading")

    sim.meter(0, 1).add_energy_wh(2_000)  # the Zhejiang tariff has no "flat" period
    wait_until(lambda: balance_of(engine, number) < 10_000, message="charge not accrued")
    wait_until(lambda: post_stale_accruals(engine, utcnow() + dt.timedelta(hours=1)) or
               entries_of(engine, number, "charge"), message="charge not posted")
    assert "periods shared by time" in entries_of(engine, number, "charge")[0].memo
