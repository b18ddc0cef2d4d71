"""Pure conversions between register words and meter values: no I/O, no clock.

Words are 16-bit big-endian registers; a 32-bit value is high word first. Addresses and scale
factors come from `meters.modbus.registers`; what is decoded is the protocol-neutral
`meters.protocol.MeterSnapshot` / `RelayState`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from meters.modbus import registers as r
from meters.protocol import MeterSnapshot, RelayState


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


# The poll block as one struct layout, built from the register map at import: every register
# inside the block in address order (UINT16 "H", INT16 "h", UINT32 "I": big-endian, high word
# first), reserved words skipped ("x"). Decoding a block is then two C calls (words -> bytes,
# bytes -> values), encoding the same two backwards: a poll costs microseconds, not tens.
_STRUCT_CODES = {r.UINT16: "H", r.INT16: "h", r.UINT32: "I"}


def _block_layout() -> tuple[struct.Struct, tuple[str, ...]]:
    fmt, names, at = [">"], [], r.BLOCK_START
    for name, reg in sorted(
        ((n, r.REGISTER_MAP[n]) for n in r.BLOCK_REGISTERS), key=lambda item: item[1].address
    ):
        if reg.address > at:
            fmt.append(f"{2 * (reg.address - at)}x")
        fmt.append(_STRUCT_CODES[reg.datatype] * reg.count)
        names.extend([name] * reg.count)
        at = reg.end
    if at < r.BLOCK_START + r.BLOCK_COUNT:
        fmt.append(f"{2 * (r.BLOCK_START + r.BLOCK_COUNT - at)}x")
    layout = struct.Struct("".join(fmt))
    assert layout.size == 2 * r.BLOCK_COUNT, "block layout does not cover the block"
    return layout, tuple(names)


_BLOCK, _BLOCK_NAMES = _block_layout()
_WORDS = struct.Struct(f">{r.BLOCK_COUNT}H")
_NAME_INDEX = {name: i for i, name in enumerate(_BLOCK_NAMES)}
# Positions of the decoded values, in the order MeterSnapshot needs them.
_I_ENERGY, _I_SPIKE, _I_PEAK, _I_FLAT, _I_VALLEY, _I_PASSWORD, _I_VOLTAGE, _I_CURRENT, \
    _I_POWER, _I_APPARENT, _I_PF, _I_FREQUENCY, _I_RELAY, _I_STATUS, _I_COUNTER = (
        _NAME_INDEX[name] for name in (
            "ENERGY_TOTAL", "ENERGY_SPIKE", "ENERGY_PEAK", "ENERGY_FLAT", "ENERGY_VALLEY",
            "PASSWORD", "VOLTAGE", "CURRENT", "ACTIVE_POWER", "APPARENT_POWER", "POWER_FACTOR",
            "FREQUENCY", "RELAY_STATE", "STATUS_BITS", "COMMAND_COUNTER"))


def decode_block(words: Sequence[int]) -> MeterSnapshot:
    """Decode the BLOCK_COUNT registers read from BLOCK_START."""
    _check_length(words, r.BLOCK_COUNT, "meter block")
    try:
        v = _BLOCK.unpack(_WORDS.pack(*words))
    except struct.error:
        bad = next((w for w in words if not (isinstance(w, int) and 0 <= w <= 0xFFFF)), None)
        raise ValueError(f"register value {bad!r} is not a 16-bit word") from None
    energy_raw = v[_I_ENERGY]
    return MeterSnapshot(
        energy_raw=energy_raw,
        energy_wh=energy_raw * r.ENERGY_WH_PER_UNIT,
        period_raw=(v[_I_SPIKE], v[_I_PEAK], v[_I_FLAT], v[_I_VALLEY]),
        voltage_dv=v[_I_VOLTAGE],
        current_ca=v[_I_CURRENT],
        power_w=v[_I_POWER] * r.POWER_W_PER_UNIT,
        relay_open=relay_open_from_state(v[_I_RELAY]),
        status_bits=v[_I_STATUS],
        command_counter=v[_I_COUNTER],
        apparent_power_va=v[_I_APPARENT],
        power_factor_milli=v[_I_PF],
        frequency_chz=v[_I_FREQUENCY],
    )


def encode_block_values(
    *,
    energy_raw: int,
    period_raw: Sequence[int],
    password: int,
    voltage_dv: int,
    current_ca: int,
    power_units: int,
    apparent_power_va: int,
    power_factor_milli: int,
    frequency_chz: int,
    relay_state: int,
    status_bits: int,
    command_counter: int,
) -> tuple[int, ...]:
    """The BLOCK_COUNT words of the poll block from raw register values (reserved words 0).

    Raises ValueError if a value does not fit its register."""
    values = [0] * len(_BLOCK_NAMES)
    values[_I_ENERGY] = energy_raw
    values[_I_SPIKE], values[_I_PEAK], values[_I_FLAT], values[_I_VALLEY] = period_raw
    values[_I_PASSWORD] = password
    values[_I_VOLTAGE] = voltage_dv
    values[_I_CURRENT] = current_ca
    values[_I_POWER] = power_units
    values[_I_APPARENT] = apparent_power_va
    values[_I_PF] = power_factor_milli
    values[_I_FREQUENCY] = frequency_chz
    values[_I_RELAY] = relay_state
    values[_I_STATUS] = status_bits
    values[_I_COUNTER] = command_counter
    try:
        return _WORDS.unpack(_BLOCK.pack(*values))
    except struct.error:
        for name, value in zip(_BLOCK_NAMES, values):  # name the register that does not fit
            encode_value(value, r.REGISTER_MAP[name].datatype)
        raise ValueError("a value does not fit its register") from None


def encode_block(snapshot: MeterSnapshot, *, password: int = 0) -> list[int]:
    """Render a snapshot into the BLOCK_COUNT registers from BLOCK_START (reserved ones 0).

    Uses `energy_raw`, not `energy_wh`. Raises ValueError if a value does not fit its register.
    """
    if snapshot.power_w % r.POWER_W_PER_UNIT:
        raise ValueError(f"power {snapshot.power_w} W is not a whole register unit")
    period = tuple(snapshot.period_raw)
    if len(period) != 4:
        raise ValueError("period_raw needs 4 values (spike, peak, flat, valley)")
    return list(encode_block_values(
        energy_raw=snapshot.energy_raw, period_raw=period, password=password,
        voltage_dv=snapshot.voltage_dv, current_ca=snapshot.current_ca,
        power_units=snapshot.power_w // r.POWER_W_PER_UNIT,
        apparent_power_va=snapshot.apparent_power_va,
        power_factor_milli=snapshot.power_factor_milli, frequency_chz=snapshot.frequency_chz,
        relay_state=relay_state_value(snapshot.relay_open), status_bits=snapshot.status_bits,
        command_counter=snapshot.command_counter))


def decode_relay(words: Sequence[int]) -> RelayState:
    """Decode a read of RELAY_STATE and STATUS_BITS (adjacent: one FC03 of RELAY_READ_COUNT)."""
    _check_length(words, r.RELAY_READ_COUNT, "relay and status")
    state, status = words
    return RelayState(relay_open_from_state(decode_value([state], r.RELAY_STATE.datatype)),
                      decode_value([status], r.STATUS_BITS.datatype))


def encode_relay_command(open_relay: bool, *, close_allowed: bool = False) -> list[int]:
    """Words to write (FC16) to RELAY_CONTROL: cut if `open_relay`, else restore (with
    `close_allowed`: arm the relay for the meter's button, 允许合闸).

    The meter's acknowledgement of these words is not the relay moving: only RELAY_STATE read
    back afterwards confirms a command.
    """
    if open_relay:
        return list(r.RELAY_CONTROL_CUT)
    return list(r.RELAY_CONTROL_ALLOW_CLOSE if close_allowed else r.RELAY_CONTROL_RESTORE)


def decode_relay_command(words: Sequence[int]) -> bool | None:
    """Words written to RELAY_CONTROL -> True (cut), False (restore), None (not a command).
    The arming restore (允许合闸) is `decode_allow_close`."""
    values = tuple(words)
    if values == r.RELAY_CONTROL_CUT:
        return True
    if values == r.RELAY_CONTROL_RESTORE:
        return False
    return None


def decode_allow_close(words: Sequence[int]) -> bool:
    """True when the words written to RELAY_CONTROL arm the relay (允许合闸)."""
    return tuple(words) == r.RELAY_CONTROL_ALLOW_CLOSE
