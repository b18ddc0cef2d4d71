"""A per-meter circuit breaker: a meter that keeps failing is left out of routine rounds and
probed slowly, so it cannot eat its bus neighbours' time (each failure may cost a timeout)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Breaker:
    threshold: int  # failures in a row that open the breaker
    probe_interval_s: float  # how often an open breaker lets one poll through
    failures: dict[int, int] = field(default_factory=dict)
    probe_at: dict[int, float] = field(default_factory=dict)

    def is_open(self, meter_id: int) -> bool:
        return self.failures.get(meter_id, 0) >= self.threshold

    def may_poll(self, meter_id: int, now: float) -> bool:
        return not self.is_open(meter_id) or now >= self.probe_at.get(meter_id, 0.0)

    def failed(self, meter_id: int, now: float) -> bool:
        """Count a failure; returns True when the breaker is (now) open."""
        self.failures[meter_id] = self.failures.get(meter_id, 0) + 1
        if self.is_open(meter_id):
            self.probe_at[meter_id] = now + self.probe_interval_s
            return True
        return False

    def succeeded(self, meter_id: int) -> bool:
        """Reset; returns True when the meter was offline (it has just come back)."""
        was_open = self.is_open(meter_id)
        self.failures.pop(meter_id, None)
        self.probe_at.pop(meter_id, None)
        return was_open
