import datetime as dt

import pytest

from meters.assess import (BACKWARDS, CONSUMPTION, FIRST, JUMP, UNCHANGED, WHILE_OPEN, WRAP_WH,
                           assess, max_plausible_wh)

T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.timezone.utc)


def judge(previous_wh, energy_wh, *, seconds=60, was_open=False, is_open=False, max_power_w=13_800):
    return assess(previous_wh=previous_wh, previous_at=None if previous_wh is None else T0,
                  previous_relay_open=was_open, energy_wh=energy_wh, relay_open=is_open,
                  read_at=T0 + dt.timedelta(seconds=seconds), max_power_w=max_power_w)


@pytest.mark.parametrize("previous, now, kwargs, verdict, energy", [
    (None, 1000, {}, FIRST, 0),
    (1000, 1000, {}, UNCHANGED, 0),
    (1000, 1010, {}, CONSUMPTION, 10),
    (1000, 1240, {}, CONSUMPTION, 240),  # 13.8 kW for 60 s is 230 Wh, +20 Wh resolution
    (1000, 1260, {}, JUMP, 260),
    (1000, 990, {}, BACKWARDS, 0),
    (WRAP_WH - 10, 20, {}, CONSUMPTION, 30),  # the register wrapped at 2^32 × 0.01 kWh
    (WRAP_WH - 10, 5_000, {}, BACKWARDS, 0),  # too far for a wrap: a reset, never charged
    (1000, 1050, {"was_open": True, "is_open": True}, WHILE_OPEN, 50),
    (1000, 1050, {"was_open": False, "is_open": True}, CONSUMPTION, 50),  # used before the cut
    (1000, 1050, {"was_open": True, "is_open": False}, CONSUMPTION, 50),  # used after restore
    (1000, 101_000, {"seconds": 8 * 3600}, CONSUMPTION, 100_000),  # a long outage, plausible
])
def test_assess(previous, now, kwargs, verdict, energy):
    result = judge(previous, now, **kwargs)
    assert (result.verdict, result.energy_wh) == (verdict, energy)
    assert result.chargeable == (verdict == CONSUMPTION)


def test_plausible_limit_grows_with_time_and_never_below_resolution():
    assert max_plausible_wh(13_800, 0) == 20
    assert max_plausible_wh(13_800, 3600) == 13_820
    assert max_plausible_wh(13_800, -5) == 20
