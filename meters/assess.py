"""Judging one reading against the last: what may be charged and what is an anomaly.

Pure: no I/O, no clock. The energy register counts 0.01 kWh (10 Wh) and wraps where its protocol
says (`meters.protocol.ENERGY_WRAP_WH`: 2^32 × 10 Wh for Modbus, 10^8 × 10 Wh for DL/T 645's
BCD); our energy figures are the register in Wh. A step is charged only
when it is plausible: forward (a wrap counts as forward), no more than the meter's breaker could
pass in the time between the readings, and not counted while the relay read open at both ends.
Anything else is an anomaly and is never charged blindly; the baseline moves on to the new
value so that later consumption is charged from there.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from meters.protocol import ENERGY_WRAP_WH, MODBUS_TCP

WRAP_WH = ENERGY_WRAP_WH[MODBUS_TCP]
ENERGY_WH_PER_UNIT = 10  # every protocol's energy register counts 0.01 kWh
SLACK_WH = 2 * ENERGY_WH_PER_UNIT  # register resolution on both readings

FIRST = "first"
UNCHANGED = "unchanged"
CONSUMPTION = "consumption"
BACKWARDS = "backwards"
JUMP = "jump"
WHILE_OPEN = "while_open"


@dataclass(frozen=True)
class Assessment:
    verdict: str
    energy_wh: int = 0  # the step forward, in Wh (0 for first, unchanged, backwards)

    @property
    def chargeable(self) -> bool:
        return self.verdict == CONSUMPTION


def max_plausible_wh(max_power_w: int, seconds: float) -> int:
    """What a breaker of `max_power_w` can pass in `seconds`, plus the register's resolution."""
    return int(max_power_w * max(seconds, 0.0) / 3600) + SLACK_WH


def assess(*, previous_wh: int | None, previous_at: dt.datetime | None,
           previous_relay_open: bool | None, energy_wh: int, relay_open: bool,
           read_at: dt.datetime, max_power_w: int, wrap_wh: int = WRAP_WH) -> Assessment:
    if previous_wh is None or previous_at is None:
        return Assessment(FIRST)
    if energy_wh == previous_wh:
        return Assessment(UNCHANGED)
    step = (energy_wh - previous_wh) % wrap_wh
    limit = max_plausible_wh(max_power_w, (read_at - previous_at).total_seconds())
    if energy_wh < previous_wh and step > limit:
        return Assessment(BACKWARDS)
    if step > limit:
        return Assessment(JUMP, step)
    if previous_relay_open and relay_open:
        return Assessment(WHILE_OPEN, step)
    return Assessment(CONSUMPTION, step)
