"""DL/T 645-2007 frames and values: pure conversions, no I/O, no clock.

A frame on the wire (every multi-byte field LOW byte first)::

    [FE FE FE FE]  68  A0 A1 A2 A3 A4 A5  68  C  L  DATA…  CS  16

- the FE bytes are an optional preamble (wakes the receivers of an RS-485 bus), outside the
  checksum;
- A0..A5: the meter's address, 12 BCD digits, A0 holding the two LOWEST digits (the address
  000000000123 is sent `23 01 00 00 00 00`); 99 99 99 99 99 99 is broadcast, AAH bytes are
  wildcards (neither is a meter: `decode_address` refuses AAH);
- C: the control code, bit7 direction (1: the meter's reply), bit6 abnormal reply, bit5 more
  frames follow, bits 4..0 the function (11H read, 1CH remote control);
- L: the number of DATA bytes; every DATA byte is sent plus 33H (mod 256);
- CS: the sum mod 256 of every byte from the first 68H to the end of DATA; 16H ends the frame.

A read (11H) carries a data identifier DI3 DI2 DI1 DI0, sent DI0 first; the reply (91H) repeats
it and adds the value. Values are BCD, low byte first; a signed value keeps its sign in the top
bit of its most significant byte. `DATA_ITEMS` below is our table of the identifiers we use,
like our Modbus register map (`meters.modbus.registers`).

Remote control (1CH) data, in the plaintext form that estates' sub-meters take: PA P0 P1 P2
(privilege level, then a 6-digit password in BCD, low byte first), C0..C3 (operator code),
N1 (the action, `ACTIONS`), N2 (reserved, 00), N3..N8 (valid until: ss mm hh DD MM YY, BCD).
State Grid's meters (国网费控表) refuse that plaintext: their 1CH data is the same command
encrypted through the meter's ESAM security module (ciphertext plus MAC, after an identity
authentication exchange with the utility's key system). `encode_control(..., authorize=...)`
is the seam for it: a callable that turns the plaintext data into what is sent.

Sources: DL/T 645-2007 as quoted by public implementations: frame, 33H offset, control codes and
the error byte bits as in bobyuxinyang/dlt645_2007 (`dlt645_api_07.h`, `trans_d07_data_err`),
data identifiers and formats as in its `dlt645_api_07.c` and 600888/dlt645 (the PyPI `dlt645`
package, `python/src/config/*_types.py`); the status-word bits: see `STATUS3_*` below.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from meters.protocol import (CLOSE_ALLOWED, KEEP_POWER, REMOTE_TRIP, RELAY_FAULT, MeterSnapshot,
                             RelayState)

try:  # a meter keeps Beijing time: a command's valid-until time is in it
    from zoneinfo import ZoneInfo

    METER_TZ: dt.tzinfo = ZoneInfo("Asia/Shanghai")
except Exception:  # no tz database: China keeps UTC+8 without daylight saving
    METER_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

PREAMBLE = b"\xfe\xfe\xfe\xfe"
START = 0x68
END = 0x16
OFFSET = 0x33
HEADER_BYTES = 10  # 68 A0..A5 68 C L
MIN_FRAME_BYTES = 12  # header, CS, 16
MAX_DATA_BYTES = 200  # DL/T 645-2007: L <= 200 in a reply (a request is shorter)
ADDRESS_DIGITS = 12
BROADCAST_ADDRESS = 10**12 - 1  # 99 99 99 99 99 99

# Control codes (C).
READ = 0x11  # 读数据
READ_REPLY = 0x91  # normal reply, no more frames
READ_REPLY_MORE = 0xB1  # normal reply, more follows (read them with 12H)
READ_ERROR = 0xD1  # abnormal reply: one error byte
CONTROL = 0x1C  # 跳合闸、报警、保电
CONTROL_REPLY = 0x9C
CONTROL_ERROR = 0xDC
REPLY_BIT = 0x80
ERROR_BIT = 0x40
MORE_BIT = 0x20
FUNCTION_MASK = 0x1F

# Remote control actions (N1).
TRIP = 0x1A  # 跳闸
CLOSE_ALLOWED_ACTION = 0x1B  # 合闸允许: armed, the resident closes with the meter's button
CLOSE_DIRECT = 0x1C  # 直接合闸
ALARM = 0x2A  # 报警
ALARM_OFF = 0x2B  # 报警解除
KEEP_POWER_ON = 0x3A  # 保电
KEEP_POWER_OFF = 0x3B  # 保电解除
ACTIONS = {
    TRIP: "trip",
    CLOSE_ALLOWED_ACTION: "close allowed",
    CLOSE_DIRECT: "direct close",
    ALARM: "alarm",
    ALARM_OFF: "alarm off",
    KEEP_POWER_ON: "keep power",
    KEEP_POWER_OFF: "keep power off",
}
CONTROL_DATA_BYTES = 16  # PA P0 P1 P2, C0..C3, N1, N2, N3..N8

# The error byte of an abnormal reply (D1H, DCH): one bit per reason.
ERROR_BITS = (
    (0x01, "other error"),  # 其他错误
    (0x02, "no data requested"),  # 无请求数据 (unknown data identifier)
    (0x04, "password wrong or unauthorised"),  # 密码错/未授权
    (0x08, "baud rate cannot change"),  # 通信速率不能更改
    (0x10, "year time zones exceeded"),  # 年时区数超
    (0x20, "day periods exceeded"),  # 日时段数超
    (0x40, "tariffs exceeded"),  # 费率数超
)
ERROR_OTHER = 0x01
ERROR_NO_DATA = 0x02
ERROR_PASSWORD = 0x04


class CodecError(ValueError):
    """Bytes that are not a valid DL/T 645 frame or value; the message says what is wrong."""


def describe_error(error_byte: int) -> str:
    """An abnormal reply's error byte in words: "DL/T 645 error 0x04 (password wrong …)"."""
    words = [text for bit, text in ERROR_BITS if error_byte & bit]
    if error_byte & 0x80 or not words:
        words.append("unknown error bits" if words else "no error bit set")
    return f"DL/T 645 error 0x{error_byte:02X} ({', '.join(words)})"


# --- BCD ----------------------------------------------------------------------------------------

def bcd_to_int(data: bytes, *, what: str = "value") -> int:
    """BCD bytes, low byte first, to an int; a nibble above 9 is refused."""
    value = 0
    for index in range(len(data) - 1, -1, -1):
        byte = data[index]
        if byte >> 4 > 9 or byte & 0x0F > 9:
            raise CodecError(f"{what}: byte {index} is {byte:02X}H, not BCD")
        value = value * 100 + (byte >> 4) * 10 + (byte & 0x0F)
    return value


def int_to_bcd(value: int, size: int, *, what: str = "value") -> bytes:
    """A non-negative int to `size` BCD bytes, low byte first."""
    if not 0 <= value < 100**size:
        raise CodecError(f"{what}: {value} does not fit {size * 2} BCD digits")
    out = bytearray()
    for _ in range(size):
        value, two = divmod(value, 100)
        out.append((two // 10) << 4 | two % 10)
    return bytes(out)


# --- addresses ----------------------------------------------------------------------------------

def encode_address(address: int) -> bytes:
    """A meter address (its 12 digits as a number) to A0..A5, low byte first."""
    if not 0 <= address <= BROADCAST_ADDRESS:
        raise CodecError(f"address {address} is not 12 digits")
    return int_to_bcd(address, 6, what="address")


def decode_address(a0_a5: bytes) -> int:
    """A0..A5 to the address as a number. A wildcard byte (AAH) is not BCD: refused."""
    if len(a0_a5) != 6:
        raise CodecError(f"address: expected 6 bytes, got {len(a0_a5)}")
    return bcd_to_int(a0_a5, what="address")


# --- frames -------------------------------------------------------------------------------------

class Frame(NamedTuple):
    """A decoded frame: address, control code, DATA with the 33H offset removed."""

    address: int
    control: int
    data: bytes

    @property
    def is_reply(self) -> bool:
        return bool(self.control & REPLY_BIT)

    @property
    def is_abnormal(self) -> bool:
        return bool(self.control & ERROR_BIT)

    @property
    def function(self) -> int:
        return self.control & FUNCTION_MASK


def checksum(data: bytes) -> int:
    """CS: the sum of the bytes from the first 68H to the end of DATA, mod 256."""
    return sum(data) & 0xFF


def encode_frame(address: int, control: int, data: bytes = b"", *, preamble: bool = True) -> bytes:
    """A whole frame: preamble (optional), header, DATA + 33H, CS, 16H."""
    if not 0 <= control <= 0xFF:
        raise CodecError(f"control code {control} is not a byte")
    if len(data) > 0xFF:
        raise CodecError(f"data: {len(data)} bytes, at most 255 fit L")
    body = bytearray((START,))
    body += encode_address(address)
    body += bytes((START, control, len(data)))
    body += bytes((byte + OFFSET) & 0xFF for byte in data)
    body += bytes((checksum(body), END))
    return (PREAMBLE if preamble else b"") + bytes(body)


def decode_frame(raw: bytes) -> Frame:
    """One whole frame (preamble allowed) to (address, control, data), checking everything:
    both 68H, the length, the checksum, the 16H end, the address's BCD. The 33H offset is
    removed from DATA; its meaning is the caller's (`decode_read_reply`, ...)."""
    start = 0
    while start < len(raw) and raw[start] == 0xFE:
        start += 1
    body = raw[start:]
    if not body:
        raise CodecError("empty frame" if not raw else "only preamble bytes, no frame")
    if body[0] != START:
        raise CodecError(f"frame starts with {body[0]:02X}H, not 68H")
    if len(body) < MIN_FRAME_BYTES:
        raise CodecError(f"frame too short: {len(body)} bytes, a frame has at least 12")
    if body[7] != START:
        raise CodecError(f"second 68H missing: byte 7 is {body[7]:02X}H")
    length = body[9]
    expected = MIN_FRAME_BYTES + length
    if len(body) != expected:
        raise CodecError(f"wrong length: L={length} makes a {expected}-byte frame, "
                         f"got {len(body)} bytes")
    cs = checksum(body[:HEADER_BYTES + length])
    if body[-2] != cs:
        raise CodecError(f"bad checksum: frame has {body[-2]:02X}H, its bytes sum to {cs:02X}H")
    if body[-1] != END:
        raise CodecError(f"bad end: last byte is {body[-1]:02X}H, not 16H")
    address = decode_address(body[1:7])
    data = bytes((byte - OFFSET) & 0xFF for byte in body[HEADER_BYTES:HEADER_BYTES + length])
    return Frame(address, body[8], data)


class FrameReader:
    """Frames out of a byte stream, resynchronising on 68H: noise, stale halves and frames that
    fail a check are dropped (each named in `rejected`) and reading goes on after them."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.rejected: list[str] = []

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def clear(self) -> None:
        self.buffer.clear()
        self.rejected.clear()

    def next(self) -> Frame | None:
        """The next whole valid frame, or None until more bytes arrive."""
        buf = self.buffer
        while True:
            at = buf.find(START)
            if at < 0:
                self._drop(len(buf))
                return None
            if at:
                self._drop(at)
            if len(buf) < HEADER_BYTES:
                return None
            if buf[7] != START:
                self.rejected.append("a 68H without its second 68H: skipped")
                del buf[:1]
                continue
            size = MIN_FRAME_BYTES + buf[9]
            if len(buf) < size:
                return None
            try:
                frame = decode_frame(bytes(buf[:size]))
            except CodecError as exc:
                self.rejected.append(str(exc))
                del buf[:1]
                continue
            del buf[:size]
            return frame

    def _drop(self, count: int) -> None:
        noise = self.buffer[:count]
        if any(byte != 0xFE for byte in noise):
            self.rejected.append(f"{len(noise)} bytes outside any frame: skipped")
        del self.buffer[:count]


# --- data identifiers ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DataItem:
    """One data identifier: DI3 DI2 DI1 DI0 as one number (00 00 FF 00 is 0x0000FF00), and its
    value: `count` fields of `size` bytes, BCD with `decimals` digits after the point (the
    decoded int counts those: 0.01 kWh for XXXXXX.XX), or a bit string (`bits`)."""

    di: int
    name: str
    size: int
    decimals: int = 0
    count: int = 1
    signed: bool = False  # the top bit of the most significant byte is the sign
    bits: bool = False  # a status word: an unsigned bit string, not BCD
    unit: str = ""

    @property
    def length(self) -> int:
        return self.size * self.count

    @property
    def wire_di(self) -> bytes:
        """DI0 DI1 DI2 DI3, as sent (before the 33H offset)."""
        return self.di.to_bytes(4, "little")


ENERGY_TOTAL = DataItem(0x00000000, "combined active energy, total", 4, 2, unit="kWh")
ENERGY_SPIKE = DataItem(0x00000100, "combined active energy, tariff 1 (尖 spike)", 4, 2, unit="kWh")
ENERGY_PEAK = DataItem(0x00000200, "combined active energy, tariff 2 (峰 peak)", 4, 2, unit="kWh")
ENERGY_FLAT = DataItem(0x00000300, "combined active energy, tariff 3 (平 flat)", 4, 2, unit="kWh")
ENERGY_VALLEY = DataItem(0x00000400, "combined active energy, tariff 4 (谷 valley)", 4, 2,
                         unit="kWh")
# One read for the total and the four tariffs (20 bytes): what a poll reads.
ENERGY_BLOCK = DataItem(0x0000FF00, "combined active energy, block: total, tariffs 1-4", 4, 2,
                        count=5, unit="kWh")
VOLTAGE_A = DataItem(0x02010100, "voltage, phase A", 2, 1, unit="V")  # XXX.X
CURRENT_A = DataItem(0x02020100, "current, phase A", 3, 3, signed=True, unit="A")  # XXX.XXX
POWER_TOTAL = DataItem(0x02030000, "active power, total", 3, 4, signed=True, unit="kW")  # XX.XXXX
STATUS_WORD_1 = DataItem(0x04000501, "running status word 1 (电表运行状态字1)", 2, bits=True)
STATUS_WORD_3 = DataItem(0x04000503, "running status word 3 (电表运行状态字3)", 2, bits=True)

DATA_ITEMS: dict[int, DataItem] = {
    item.di: item
    for item in (ENERGY_TOTAL, ENERGY_SPIKE, ENERGY_PEAK, ENERGY_FLAT, ENERGY_VALLEY, ENERGY_BLOCK,
                 VOLTAGE_A, CURRENT_A, POWER_TOTAL, STATUS_WORD_1, STATUS_WORD_3)
}
ENERGY_WRAP = 10**8  # XXXXXX.XX kWh: 999999.99 kWh is the last value before 0

# Running status word 3 (operation, 操作类), 04 00 05 03, bit meanings:
# - bit4 relay state, 0 on (通) / 1 off (断); bit6 relay command state, 0 on / 1 off;
#   bit7 pre-trip alarm (预跳闸报警): the bit field METER_STATE3_BIT_TYPE of a public
#   concentrator source (found by the search tool's `find_string` "运行状态字3"), and the
#   `C_RelayStatusOff 0x10`, `C_RelayOrderStatusOff 0x40`, `C_RelayPreWarning 0x80` masks on
#   the word's first byte in CHINT meter firmware, Charity-Vance/Leetcode
#   pro/FM001_Project/Libraries/src/Relay/Relay.h; a meter-test tool checks bit7 (0x80) after a
#   remote alarm command;
# - bit12 keep-power state (保电): `C_RelayProtect_Current 0x10` on the word's second byte in
#   the same Relay.h (its Relay.c sets it on 3AH and clears it on 3BH);
# - 合闸允许 (close allowed, armed) has no bit of its own: the same Relay.c writes the command
#   bit as "off" only for the trip commands (1AH and the delayed trips) and as "on" for 合闸允许
#   and in keep-power, while the relay bit reports the contact, still open until the resident
#   presses the button. Relay open with the command bit "on" is therefore read as armed
#   (CLOSE_ALLOWED). (A direct close whose relay has not moved yet reads the same for a moment.)
# Status word 1, 04 00 05 01, bit8 control circuit error (控制回路错误): CHINT's Relay.c
# `C_ControlLoopError 0x01` on the word's second byte, cleared when the relay does as
# commanded: the meter flagging its relay faulty (RELAY_FAULT).
# A cover or terminal-box opening is no status bit in DL/T 645-2007: it is an event record
# (开表盖 03 30 0D xx, 开端钮盒 03 30 0E xx), so COVER_OPEN stays unset for this protocol.
STATUS3_RELAY_OPEN = 1 << 4
STATUS3_COMMAND_TRIP = 1 << 6
STATUS3_PRE_TRIP_ALARM = 1 << 7
STATUS3_KEEP_POWER = 1 << 12
STATUS1_CONTROL_CIRCUIT_ERROR = 1 << 8


def decode_value(item: DataItem, payload: bytes) -> int | tuple[int, ...]:
    """A value's bytes (after the DI, offset removed) to an int in the item's smallest unit, or
    a tuple of them for a block. Non-BCD nibbles are refused."""
    if len(payload) != item.length:
        raise CodecError(f"{item.name}: expected {item.length} bytes, got {len(payload)}")
    values = []
    for index in range(item.count):
        field = payload[index * item.size:(index + 1) * item.size]
        if item.bits:
            values.append(int.from_bytes(field, "little"))
            continue
        negative = False
        if item.signed and field[-1] & 0x80:
            negative = True
            field = field[:-1] + bytes((field[-1] & 0x7F,))
        value = bcd_to_int(field, what=item.name)
        values.append(-value if negative else value)
    return values[0] if item.count == 1 else tuple(values)


def encode_value(item: DataItem, value: int | tuple[int, ...]) -> bytes:
    """The inverse of `decode_value` (the simulator's side)."""
    values = (value,) if item.count == 1 else tuple(value)  # type: ignore[arg-type]
    if len(values) != item.count:
        raise CodecError(f"{item.name}: expected {item.count} values, got {len(values)}")
    out = bytearray()
    for one in values:
        if item.bits:
            if not 0 <= one < 1 << (8 * item.size):
                raise CodecError(f"{item.name}: {one} does not fit {item.size} bytes")
            out += one.to_bytes(item.size, "little")
            continue
        if one < 0 and not item.signed:
            raise CodecError(f"{item.name}: {one} is negative")
        field = bytearray(int_to_bcd(abs(one), item.size, what=item.name))
        if item.signed:
            if field[-1] & 0x80:
                raise CodecError(f"{item.name}: {one} leaves no room for the sign bit")
            if one < 0:
                field[-1] |= 0x80
        out += field
    return bytes(out)


# --- requests and replies -----------------------------------------------------------------------

def encode_read(address: int, di: int | DataItem, *, preamble: bool = True) -> bytes:
    """A read request (11H) of one data identifier."""
    number = di.di if isinstance(di, DataItem) else di
    return encode_frame(address, READ, number.to_bytes(4, "little"), preamble=preamble)


def encode_read_reply(address: int, item: DataItem, value: int | tuple[int, ...]) -> bytes:
    """The meter's normal reply (91H) to a read of `item`."""
    return encode_frame(address, READ_REPLY, item.wire_di + encode_value(item, value))


def encode_error_reply(address: int, control: int, error_byte: int) -> bytes:
    """The meter's abnormal reply (D1H to a read, DCH to a control) with its error byte."""
    return encode_frame(address, control | REPLY_BIT | ERROR_BIT, bytes((error_byte,)))


def decode_read_request(frame: Frame) -> int:
    """The data identifier a read request (11H) asks for."""
    if frame.control != READ:
        raise CodecError(f"control code {frame.control:02X}H is not a read (11H)")
    if len(frame.data) != 4:
        raise CodecError(f"a read carries a 4-byte identifier, got {len(frame.data)} bytes")
    return int.from_bytes(frame.data, "little")


def decode_read_reply(frame: Frame) -> tuple[int, bytes]:
    """A normal read reply (91H/B1H) to (data identifier, value bytes)."""
    if frame.control not in (READ_REPLY, READ_REPLY_MORE):
        raise CodecError(f"control code {frame.control:02X}H is not a normal read reply")
    if len(frame.data) < 4:
        raise CodecError(f"a read reply starts with a 4-byte identifier, got "
                         f"{len(frame.data)} bytes")
    return int.from_bytes(frame.data[:4], "little"), frame.data[4:]


def decode_error_byte(frame: Frame) -> int:
    """The error byte of an abnormal reply (D1H, DCH)."""
    if not (frame.is_reply and frame.is_abnormal):
        raise CodecError(f"control code {frame.control:02X}H is not an abnormal reply")
    if len(frame.data) != 1:
        raise CodecError(f"an abnormal reply carries 1 error byte, got {len(frame.data)}")
    return frame.data[0]


def encode_datetime(moment: dt.datetime) -> bytes:
    """ss mm hh DD MM YY, BCD (the meter's local time; a naive datetime is taken as it is)."""
    if not 2000 <= moment.year <= 2099:
        raise CodecError(f"valid-until year {moment.year} is not 2000-2099")
    parts = (moment.second, moment.minute, moment.hour, moment.day, moment.month,
             moment.year % 100)
    return b"".join(int_to_bcd(part, 1, what="time") for part in parts)


def decode_datetime(data: bytes) -> dt.datetime:
    """ss mm hh DD MM YY, BCD, to a naive datetime (refused if not BCD or not a date)."""
    if len(data) != 6:
        raise CodecError(f"a time is 6 bytes, got {len(data)}")
    second, minute, hour, day, month, year = (bcd_to_int(data[i:i + 1], what="time")
                                              for i in range(6))
    try:
        return dt.datetime(2000 + year, month, day, hour, minute, second)
    except ValueError as exc:
        raise CodecError(f"time {data.hex(' ')}: {exc}") from None


def control_data(action: int, password: int, operator: int, valid_until: dt.datetime, *,
                 level: int = 0x02) -> bytes:
    """The plaintext 1CH data (16 bytes, before the offset): PA P0 P1 P2 C0..C3 N1 N2 N3..N8."""
    if action not in ACTIONS:
        raise CodecError(f"control action {action:02X}H is not one of "
                         f"{', '.join(f'{a:02X}H' for a in ACTIONS)}")
    if not 0 <= level <= 0xFF:
        raise CodecError(f"privilege level {level} is not a byte")
    if not 0 <= operator <= 0xFFFFFFFF:
        raise CodecError(f"operator code {operator} does not fit 4 bytes")
    return (bytes((level,)) + int_to_bcd(password, 3, what="password")
            + operator.to_bytes(4, "little") + bytes((action, 0x00))
            + encode_datetime(valid_until))


def encode_control(address: int, action: int, password: int, operator: int,
                   valid_until: dt.datetime, *, level: int = 0x02,
                   authorize: Callable[[int, bytes], bytes] | None = None,
                   preamble: bool = True) -> bytes:
    """A remote control frame (1CH): trip, close allowed, direct close, alarm, keep power.

    `password` is the 6-digit password as a number (000000 is 0), `operator` the 4-byte
    operator code the meter records, `valid_until` the meter-local time after which the meter
    must refuse it. `authorize(address, plaintext)` may replace the plaintext data with what
    the meter really takes (State Grid meters: ciphertext and MAC from an ESAM); None sends the
    plaintext form. Broadcast is refused: a remote control addresses one meter.
    """
    if address == BROADCAST_ADDRESS:
        raise CodecError("a remote control is never broadcast")
    data = control_data(action, password, operator, valid_until, level=level)
    if authorize is not None:
        data = authorize(address, data)
    return encode_frame(address, CONTROL, data, preamble=preamble)


class ControlCommand(NamedTuple):
    level: int
    password: int
    operator: int
    action: int
    valid_until: dt.datetime


def decode_control_request(frame: Frame) -> ControlCommand:
    """The plaintext 1CH data of a request (the simulator's side)."""
    if frame.control != CONTROL:
        raise CodecError(f"control code {frame.control:02X}H is not a remote control (1CH)")
    data = frame.data
    if len(data) != CONTROL_DATA_BYTES:
        raise CodecError(f"a remote control carries {CONTROL_DATA_BYTES} bytes, got {len(data)}")
    return ControlCommand(
        level=data[0],
        password=bcd_to_int(data[1:4], what="password"),
        operator=int.from_bytes(data[4:8], "little"),
        action=data[8],
        valid_until=decode_datetime(data[10:16]),
    )


# --- status words and snapshots -----------------------------------------------------------------

def needs_status_word_1(word3: int) -> bool:
    """Whether status word 1 can add anything: only a relay commanded off that is still on may
    be a relay fault (its control circuit error bit); read it only then (one frame fewer)."""
    return bool(word3 & STATUS3_COMMAND_TRIP) and not word3 & STATUS3_RELAY_OPEN


def status_flags(word3: int, word1: int | None = None) -> tuple[bool, int]:
    """Status word 3 (and 1, if read) to (relay open, meters.protocol flags)."""
    relay_open = bool(word3 & STATUS3_RELAY_OPEN)
    flags = 0
    if word3 & STATUS3_KEEP_POWER:
        flags |= KEEP_POWER
    if relay_open:
        flags |= REMOTE_TRIP if word3 & STATUS3_COMMAND_TRIP else CLOSE_ALLOWED
    if word1 is not None and word1 & STATUS1_CONTROL_CIRCUIT_ERROR:
        flags |= RELAY_FAULT
    return relay_open, flags


def decode_relay(values: Mapping[int, bytes]) -> RelayState:
    """Status word 3 (and 1 where read), keyed by data identifier, to a RelayState."""
    word3 = _word(values, STATUS_WORD_3)
    word1 = _word(values, STATUS_WORD_1) if STATUS_WORD_1.di in values else None
    relay_open, flags = status_flags(word3, word1)
    return RelayState(relay_open, flags)


def decode_snapshot(values: Mapping[int, bytes]) -> MeterSnapshot:
    """Read values, keyed by data identifier (value bytes after the DI), to a MeterSnapshot.

    Needed: the energy (the block 00 00 FF 00, or the total 00 00 00 00 alone: then the
    tariffs are unknown and read 0) and status word 3. Optional: active power, voltage and
    current of phase A (0 when not read), status word 1.
    """
    if ENERGY_BLOCK.di in values:
        total, *tariffs = decode_value(ENERGY_BLOCK, values[ENERGY_BLOCK.di])  # type: ignore[misc]
    elif ENERGY_TOTAL.di in values:
        total, tariffs = decode_value(ENERGY_TOTAL, values[ENERGY_TOTAL.di]), [0, 0, 0, 0]
    else:
        raise CodecError("snapshot: no energy read (00 00 FF 00 or 00 00 00 00)")
    relay = decode_relay(values)
    power = _optional(values, POWER_TOTAL)  # 0.0001 kW = 0.1 W
    current = _optional(values, CURRENT_A)  # 0.001 A
    return MeterSnapshot(
        energy_raw=total,
        energy_wh=total * 10,
        period_raw=tuple(tariffs),  # type: ignore[arg-type]
        voltage_dv=_optional(values, VOLTAGE_A),
        current_ca=_tenth(current),
        power_w=_tenth(power),
        relay_open=relay.open,
        status_bits=relay.status_bits,
        command_counter=0,  # DL/T 645 meters count no commands we can read cheaply
    )


def _tenth(value: int) -> int:
    """value / 10, rounded toward zero (a small negative reading stays 0, not -1)."""
    return value // 10 if value >= 0 else -(-value // 10)


def _word(values: Mapping[int, bytes], item: DataItem) -> int:
    if item.di not in values:
        raise CodecError(f"{item.name} was not read")
    return decode_value(item, values[item.di])  # type: ignore[return-value]


def _optional(values: Mapping[int, bytes], item: DataItem) -> int:
    if item.di not in values:
        return 0
    return decode_value(item, values[item.di])  # type: ignore[return-value]
