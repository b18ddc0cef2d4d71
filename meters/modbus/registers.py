"""The meter's Modbus register map, as data.

This is the only module that knows register numbers, word values and scale factors. Every
other module (codec, transport, simulator, worker) names registers from here, so a real vendor
map replaces ours in this one file. The map is checked at import: overlapping registers, a
register that straddles the poll block, or a block too long for one FC03 read fail loudly.

Sources: Acrel DDSY1352 manual (energy, password, electrical values), a public Acrel
integration (relay control at 0x0057); 0x0030-0x0032 are project-defined. See docs/meters.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meters import protocol as p


class DataType(enum.Enum):
    """A register value's encoding: big-endian words, 32-bit values high word first."""

    UINT16 = (1, False)
    INT16 = (1, True)
    UINT32 = (2, False)

    def __init__(self, words: int, signed: bool) -> None:
        self.words = words
        self.signed = signed

    @property
    def bits(self) -> int:
        return 16 * self.words

    @property
    def min_value(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max_value(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1


UINT16 = DataType.UINT16
INT16 = DataType.INT16
UINT32 = DataType.UINT32


@dataclass(frozen=True)
class Register:
    """`count` values of `datatype` starting at holding register `address`."""

    address: int
    datatype: DataType = UINT16
    count: int = 1
    writable: bool = False

    @property
    def words(self) -> int:
        """Number of 16-bit registers this entry occupies."""
        return self.datatype.words * self.count

    @property
    def end(self) -> int:
        """First address after this entry."""
        return self.address + self.words


# Energy, in 0.01 kWh. Only grows; wraps at ENERGY_WRAP.
ENERGY_TOTAL = Register(0x0000, UINT32)
ENERGY_SPIKE = Register(0x0002, UINT32)  # 尖
ENERGY_PEAK = Register(0x0004, UINT32)  # 峰
ENERGY_FLAT = Register(0x0006, UINT32)  # 平
ENERGY_VALLEY = Register(0x0008, UINT32)  # 谷
PASSWORD = Register(0x000A, UINT16, writable=True)  # 0-9999
VOLTAGE = Register(0x000B, UINT16)  # 0.1 V
CURRENT = Register(0x000C, UINT16)  # 0.01 A
ACTIVE_POWER = Register(0x000D, INT16)  # 0.001 kW = 1 W
APPARENT_POWER = Register(0x000F, UINT16)  # 0.001 kVA = 1 VA
POWER_FACTOR = Register(0x0010, INT16)  # 0.001
FREQUENCY = Register(0x0011, UINT16)  # 0.01 Hz
RELAY_STATE = Register(0x0030, UINT16)  # RELAY_STATE_CLOSED / RELAY_STATE_OPEN
STATUS_BITS = Register(0x0031, UINT16)  # STATUS_* bit numbers below
COMMAND_COUNTER = Register(0x0032, UINT16)  # accepted relay commands, wraps at 65536
RELAY_CONTROL = Register(0x0057, UINT16, count=2, writable=True)  # FC16 only

REGISTER_MAP: dict[str, Register] = {
    "ENERGY_TOTAL": ENERGY_TOTAL,
    "ENERGY_SPIKE": ENERGY_SPIKE,
    "ENERGY_PEAK": ENERGY_PEAK,
    "ENERGY_FLAT": ENERGY_FLAT,
    "ENERGY_VALLEY": ENERGY_VALLEY,
    "PASSWORD": PASSWORD,
    "VOLTAGE": VOLTAGE,
    "CURRENT": CURRENT,
    "ACTIVE_POWER": ACTIVE_POWER,
    "APPARENT_POWER": APPARENT_POWER,
    "POWER_FACTOR": POWER_FACTOR,
    "FREQUENCY": FREQUENCY,
    "RELAY_STATE": RELAY_STATE,
    "STATUS_BITS": STATUS_BITS,
    "COMMAND_COUNTER": COMMAND_COUNTER,
    "RELAY_CONTROL": RELAY_CONTROL,
}

# One FC03 read covering energy .. command counter; the gaps are reserved and read 0.
BLOCK_START = 0x0000
BLOCK_COUNT = 0x33
BLOCK_REGISTERS: tuple[str, ...] = tuple(
    name
    for name, reg in REGISTER_MAP.items()
    if BLOCK_START <= reg.address < BLOCK_START + BLOCK_COUNT
)

# Scale factors and wrap.
ENERGY_WRAP = 2**32  # the energy registers count modulo this, in 0.01 kWh
ENERGY_WH_PER_UNIT = 10  # one energy register unit (0.01 kWh) in Wh
POWER_W_PER_UNIT = 1  # one active-power unit (0.001 kW) in W

# Relay state register values.
RELAY_STATE_CLOSED = 0  # supply on
RELAY_STATE_OPEN = 1  # supply cut

# Relay control words (FC16 to RELAY_CONTROL); any other value is refused with exception 03.
RELAY_CONTROL_CUT: tuple[int, ...] = (1, 1)  # 拉闸
RELAY_CONTROL_RESTORE: tuple[int, ...] = (1, 0)  # 合闸
# 允许合闸: the relay stays open, armed; the resident closes it with the meter's button
# (project-defined, like the Acrel-style cut/restore words above).
RELAY_CONTROL_ALLOW_CLOSE: tuple[int, ...] = (1, 2)

# Status bit numbers (bit 0 = least significant).
STATUS_REMOTE_TRIP = 3  # relay opened by a remote command and still latched
STATUS_KEEP_POWER = 4  # keep-power (保电): cut commands are acknowledged but ignored
STATUS_CLOSE_ALLOWED = 5  # armed (允许合闸): the button closes the relay
STATUS_RELAY_FAULT = 6  # the meter judges its own relay faulty
STATUS_COVER_OPEN = 7  # terminal cover open (开盖)
# These are `meters.protocol`'s status flags, bit for bit (checked below): the codec passes the
# status word through.

# The relay read-back: RELAY_STATE and STATUS_BITS in one FC03.
RELAY_READ_COUNT = 2

MAX_READ_COUNT = 125  # Modbus limit for one FC03 request


def _check_map() -> None:
    """Fail at import if the map is inconsistent."""
    block_end = BLOCK_START + BLOCK_COUNT
    if not 1 <= BLOCK_COUNT <= MAX_READ_COUNT:
        raise ValueError(f"BLOCK_COUNT {BLOCK_COUNT} is not a single FC03 read")
    taken: dict[int, str] = {}
    for name, reg in REGISTER_MAP.items():
        if reg.count < 1 or not 0 <= reg.address or reg.end > 0x10000:
            raise ValueError(f"{name}: outside the 16-bit address space")
        inside = [BLOCK_START <= a < block_end for a in (reg.address, reg.end - 1)]
        if inside[0] != inside[1]:
            raise ValueError(f"{name}: straddles the poll block edge")
        for address in range(reg.address, reg.end):
            if address in taken:
                raise ValueError(f"{name} overlaps {taken[address]} at {address:#06x}")
            taken[address] = name
    for name in ("ENERGY_TOTAL", "RELAY_STATE", "STATUS_BITS", "COMMAND_COUNTER"):
        if name not in BLOCK_REGISTERS:
            raise ValueError(f"{name} must be inside the poll block")
    if RELAY_CONTROL.words != len(RELAY_CONTROL_CUT) or RELAY_CONTROL.words != len(
        RELAY_CONTROL_RESTORE
    ):
        raise ValueError("relay control words do not fit RELAY_CONTROL")
    if len({RELAY_CONTROL_CUT, RELAY_CONTROL_RESTORE, RELAY_CONTROL_ALLOW_CLOSE}) != 3:
        raise ValueError("cut, restore and allow-close words must differ")
    if STATUS_BITS.address != RELAY_STATE.address + RELAY_STATE.words:
        raise ValueError("STATUS_BITS must follow RELAY_STATE (one read-back)")
    for bit, flag in ((STATUS_REMOTE_TRIP, p.REMOTE_TRIP), (STATUS_KEEP_POWER, p.KEEP_POWER),
                      (STATUS_CLOSE_ALLOWED, p.CLOSE_ALLOWED), (STATUS_RELAY_FAULT, p.RELAY_FAULT),
                      (STATUS_COVER_OPEN, p.COVER_OPEN)):
        if 1 << bit != flag:
            raise ValueError(f"status bit {bit} is not meters.protocol's flag {flag:#x}")
    if RELAY_STATE_CLOSED == RELAY_STATE_OPEN:
        raise ValueError("relay state values must differ")


_check_map()
