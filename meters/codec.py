"""Pure conversions between register words and meter values: no I/O, no clock.

Words are 16-bit big-endian registers; a 32-bit value is high word first. Addresses and scale
factors come from `meters.registers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from meters import registers as r


@dataclass(frozen=True)
class MeterSnapshot:
    """One read of the poll block, decoded. Units are in the field names."""

    energy_raw: int  # total active energy register, 0.01 kWh, wraps at ENERGY_WRAP
    energy_wh: int  # energy_raw * 10
    period_raw: tuple[int, int, int, int]  # spike, peak, flat, valley (0.01 kWh)
    voltage_dv: int  # 0.1 V
    current_ca: int  # 0.01 A
    power_w: int  # active power, W (register unit 0.001 kW); negative when exporting
    relay_open: bool  # True: supply cut; False: supply on
    status_bits: int
    command_counter: int  # accepted relay commands, wraps at 65536
    apparent_power_va: int = 0
    power_factor_milli: int = 0  # 0.001
    frequency_chz: int = 0  # 0.01 Hz

    @property
    def remote_trip(self) -> bool:
        """The relay was opened by a remote command and is latched."""
        return bool(self.status_bits >> r.STATUS_REMOTE_TRIP & 1)

    @property
    def keep_power(self) -> bool:
        """Keep-power mode (保电): the meter acknowledges cuts but does not open."""
        return bool(self.status_bits >> r.STATUS_KEEP_POWER & 1)


def _check_length(words: Sequence[int], expected: int, what: str) -> None:
    if len(words) != expected:
        raise ValueError(f"{what}: expected {expected} registers, got {len(words)}")


def decode_value(words: Sequence[int], datatype: r.DataType) -> int:
    """Combine `datatype.words` registers (high word first) into one integer."""
    _check_length(words, datatype.words, datatype.name)
    value = 0
    for word in words:
        if not 0 <= word <= 0xFFFF:
            raise ValueError(f"register value {word} is not a 16-bit word")
        value = value << 16 | word
    if datatype.signed and value > datatype.max_value:
        value -= 1 << datatype.bits
    return value


def encode_value(value: int, datatype: r.DataType) -> list[int]:
    """Split one integer into `datatype.words` registers, high word first."""
    if not datatype.min_value <= value <= datatype.max_value:
        raise ValueError(f"{value} does not fit {datatype.name}")
    value &= (1 << datatype.bits) - 1
    return [value >> (16 * i) & 0xFFFF for i in reversed(range(datatype.words))]


def _field(words: Sequence[int], reg: r.Register) -> int:
    offset = reg.address - r.BLOCK_START
    return decode_value(words[offset : offset + reg.words], reg.datatype)


def _put(words: list[int], reg: r.Register, value: int) -> None:
    offset = reg.address - r.BLOCK_START
    words[offset : offset + reg.words] = encode_value(value, reg.datatype)


def relay_open_from_state(value: int) -> bool:
    """Relay state register value -> True if open (cut). Unknown values raise ValueError."""
    if value == r.RELAY_STATE_OPEN:
        return True
    if value == r.RELAY_STATE_CLOSED:
        return False
    raise ValueError(f"relay state register holds unknown value {value}")


def relay_state_value(open_relay: bool) -> int:
    """True (cut) / False (supply on) -> relay state register value."""
    return r.RELAY_STATE_OPEN if open_relay else r.RELAY_STATE_CLOSED


def decode_block(words: Sequence[int]) -> MeterSnapshot:
    """Decode the BLOCK_COUNT registers read from BLOCK_START."""
    _check_length(words, r.BLOCK_COUNT, "meter block")
    energy_raw = _field(words, r.ENERGY_TOTAL)
    return MeterSnapshot(
        energy_raw=energy_raw,
        energy_wh=energy_raw * r.ENERGY_WH_PER_UNIT,
        period_raw=(
            _field(words, r.ENERGY_SPIKE),
            _field(words, r.ENERGY_PEAK),
            _field(words, r.ENERGY_FLAT),
            _field(words, r.ENERGY_VALLEY),
        ),
        voltage_dv=_field(words, r.VOLTAGE),
        current_ca=_field(words, r.CURRENT),
        power_w=_field(words, r.ACTIVE_POWER) * r.POWER_W_PER_UNIT,
        relay_open=relay_open_from_state(_field(words, r.RELAY_STATE)),
        status_bits=_field(words, r.STATUS_BITS),
        command_counter=_field(words, r.COMMAND_COUNTER),
        apparent_power_va=_field(words, r.APPARENT_POWER),
        power_factor_milli=_field(words, r.POWER_FACTOR),
        frequency_chz=_field(words, r.FREQUENCY),
    )


def encode_block(snapshot: MeterSnapshot, *, password: int = 0) -> list[int]:
    """Render a snapshot into the BLOCK_COUNT registers from BLOCK_START (reserved ones 0).

    Uses `energy_raw`, not `energy_wh`. Raises ValueError if a value does not fit its register.
    """
    if snapshot.power_w % r.POWER_W_PER_UNIT:
        raise ValueError(f"power {snapshot.power_w} W is not a whole register unit")
    words = [0] * r.BLOCK_COUNT
    _put(words, r.ENERGY_TOTAL, snapshot.energy_raw)
    for reg, value in zip(
        (r.ENERGY_SPIKE, r.ENERGY_PEAK, r.ENERGY_FLAT, r.ENERGY_VALLEY),
        snapshot.period_raw,
        strict=True,
    ):
        _put(words, reg, value)
    _put(words, r.PASSWORD, password)
    _put(words, r.VOLTAGE, snapshot.voltage_dv)
    _put(words, r.CURRENT, snapshot.current_ca)
    _put(words, r.ACTIVE_POWER, snapshot.power_w // r.POWER_W_PER_UNIT)
    _put(words, r.APPARENT_POWER, snapshot.apparent_power_va)
    _put(words, r.POWER_FACTOR, snapshot.power_factor_milli)
    _put(words, r.FREQUENCY, snapshot.frequency_chz)
    _put(words, r.RELAY_STATE, relay_state_value(snapshot.relay_open))
    _put(words, r.STATUS_BITS, snapshot.status_bits)
    _put(words, r.COMMAND_COUNTER, snapshot.command_counter)
    return words


def decode_relay(words: Sequence[int]) -> bool:
    """Decode a one-register read of RELAY_STATE: True if open (cut)."""
    return relay_open_from_state(decode_value(words, r.RELAY_STATE.datatype))


def encode_relay_command(open_relay: bool) -> list[int]:
    """Words to write (FC16) to RELAY_CONTROL: cut if `open_relay`, else restore.

    The meter's acknowledgement of these words is not the relay moving: only RELAY_STATE read
    back afterwards confirms a command.
    """
    return list(r.RELAY_CONTROL_CUT if open_relay else r.RELAY_CONTROL_RESTORE)


def decode_relay_command(words: Sequence[int]) -> bool | None:
    """Words written to RELAY_CONTROL -> True (cut), False (restore), None (not a command)."""
    values = tuple(words)
    if values == r.RELAY_CONTROL_CUT:
        return True
    if values == r.RELAY_CONTROL_RESTORE:
        return False
    return None
