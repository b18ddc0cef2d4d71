"""The one seam between the worker and a meter protocol: what the worker needs from a bus.

A gateway speaks one protocol, named in its row (`Gateway.protocol`):

- `modbus_tcp`: our Modbus register map (`meters.modbus.registers`) over Modbus TCP (MBAP);
- `modbus_rtu_over_tcp`: the same register map, RTU frames (CRC) tunnelled through a
  transparent serial server (RS-485 to Ethernet);
- `dlt645_tcp`: DL/T 645-2007 frames (`meters.dlt645`) through a transparent serial server.

Each protocol is a package of its own with its codec and its client, a class of the `MeterBus`
shape below. `meters.bus.open_bus` picks it from the gateway row; nothing in scheduling
(`gateway_loop`) or storage (`store`) knows which protocol a gateway speaks. A fourth protocol
is a new package, one line in `PROTOCOLS` and one branch in `meters.bus.open_bus` (see
docs/meters.md). This module imports no protocol: the protocols import it.

Every failure is a `MeterError` of one of three kinds, whatever the protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, Protocol

MODBUS_TCP = "modbus_tcp"
MODBUS_RTU_OVER_TCP = "modbus_rtu_over_tcp"
DLT645_TCP = "dlt645_tcp"
PROTOCOLS = (MODBUS_TCP, MODBUS_RTU_OVER_TCP, DLT645_TCP)

# A meter's address on its bus (`Meter.unit_id`): a Modbus unit id, or a DL/T 645 address (12
# BCD digits, kept as its number: 000000000123 is 123, shown with `format_address`).
MODBUS_UNIT_RANGE = range(1, 248)
DLT645_ADDRESS_RANGE = range(0, 10**12 - 1)  # 999999999999 (all AA/99) is broadcast, not a meter

# The energy registers' wrap, in Wh, per protocol: Modbus counts 0.01 kWh in 32 bits; DL/T 645
# counts XXXXXX.XX kWh in 4 BCD bytes (rolls over after 999999.99 kWh).
ENERGY_WRAP_WH = {
    MODBUS_TCP: 2**32 * 10,
    MODBUS_RTU_OVER_TCP: 2**32 * 10,
    DLT645_TCP: 10**8 * 10,
}

# Status flags of a snapshot or a relay read, the same for every protocol. (Our Modbus map's
# status word carries these very bits, so its codec passes the word through; DL/T 645's codec
# maps its running status words onto them.)
REMOTE_TRIP = 1 << 3  # the relay was opened by a remote command and is latched
KEEP_POWER = 1 << 4  # 保电: the meter acknowledges cuts and does not open
CLOSE_ALLOWED = 1 << 5  # 允许合闸: armed; the relay closes when the resident presses the button
RELAY_FAULT = 1 << 6  # the meter reports its relay as faulty (it did not move as commanded)
COVER_OPEN = 1 << 7  # the terminal or meter cover is open (tamper), where the meter reports it


class _Flags:
    """The status flags of a read, by name (`status_bits` holds them)."""

    __slots__ = ()
    status_bits: int

    @property
    def remote_trip(self) -> bool:
        return bool(self.status_bits & REMOTE_TRIP)

    @property
    def keep_power(self) -> bool:
        return bool(self.status_bits & KEEP_POWER)

    @property
    def close_allowed(self) -> bool:
        return bool(self.status_bits & CLOSE_ALLOWED)

    @property
    def relay_fault(self) -> bool:
        return bool(self.status_bits & RELAY_FAULT)

    @property
    def cover_open(self) -> bool:
        return bool(self.status_bits & COVER_OPEN)


@dataclass(frozen=True)
class MeterSnapshot(_Flags):
    """One read of a meter, decoded. Units are in the field names."""

    energy_raw: int  # total active energy, 0.01 kWh, wraps (see ENERGY_WRAP_WH)
    energy_wh: int  # energy_raw * 10
    period_raw: tuple[int, int, int, int]  # spike, peak, flat, valley (0.01 kWh)
    voltage_dv: int  # 0.1 V
    current_ca: int  # 0.01 A
    power_w: int  # active power, W; negative when exporting
    relay_open: bool  # True: supply cut; False: supply on
    status_bits: int  # the flags above
    command_counter: int  # accepted relay commands where the meter counts them, else 0
    apparent_power_va: int = 0
    power_factor_milli: int = 0  # 0.001
    frequency_chz: int = 0  # 0.01 Hz



@dataclass(frozen=True, slots=True)
class RelayState(_Flags):
    """The relay read back: open or closed, and the status flags that say why."""

    open: bool
    status_bits: int = 0


TIMEOUT = "timeout"
EXCEPTION = "exception"
CONNECTION = "connection"


class MeterError(Exception):
    """A request to one meter failed.

    kind: "timeout" (no answer in time), "exception" (the meter or gateway answered with an
    error, `exception_code` set: a Modbus exception code or DL/T 645's error byte; or answered
    something that does not decode, `exception_code` None), "connection" (the gateway cannot be
    reached). `what` is the protocol's own words for the error ("Modbus exception 0x0B (gateway
    target failed to respond)", "DL/T 645 error 0x04 (password wrong)").
    """

    def __init__(
        self,
        kind: str,
        *,
        unit_id: int,
        host: str,
        port: int,
        exception_code: int | None = None,
        operation: str = "",
        detail: str = "",
        what: str = "",
    ) -> None:
        self.kind = kind
        self.unit_id = unit_id
        self.host = host
        self.port = port
        self.exception_code = exception_code
        self.operation = operation
        self.detail = detail
        self.what = what
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"meter {self.unit_id} @ {self.host}:{self.port}"
        if self.what:
            what = self.what
        elif self.kind == EXCEPTION:
            what = "invalid response"
        elif self.kind == TIMEOUT:
            what = "no response"
        else:
            what = "no connection to the gateway"
        extra = "; ".join(part for part in (self.operation, self.detail) if part)
        return f"{where}: {what}" + (f" [{extra}]" if extra else "")


class FailureLog:
    """What every protocol's client logs: one WARNING line per failed transaction (gateway,
    meter, what failed), and one INFO line when a failing meter, or the gateway, answers again.
    `failing`: the meters (None: the gateway) whose last transaction failed."""

    def __init__(self, log: logging.Logger, host: str, port: int,
                 unit_text: Callable[[int], str] = str) -> None:
        self.log, self.host, self.port, self.unit_text = log, host, port, unit_text
        self.failing: set[int | None] = set()

    def fail(self, error: MeterError) -> NoReturn:
        """Log the failed transaction in one line and raise it."""
        self.failing.add(None if error.kind == CONNECTION else error.unit_id)
        self.log.warning("%s", error)
        raise error

    def succeeded(self, key: int | None) -> None:
        if key in self.failing:
            self.failing.discard(key)
            if key is None:
                self.log.info("gateway %s:%s reachable again", self.host, self.port)
            else:
                self.log.info("meter %s @ %s:%s answering again", self.unit_text(key),
                              self.host, self.port)


class MeterBus(Protocol):
    """One gateway's bus. Every method raises `MeterError` on failure."""

    protocol: str

    async def read_snapshot(self, unit_id: int) -> MeterSnapshot:
        """Energy (total and per period), relay state and status, read in one transaction."""
        ...

    async def read_relay(self, unit_id: int) -> RelayState:
        """The relay (open: supply cut) and the status flags, in one transaction."""
        ...

    async def write_relay(self, unit_id: int, open_relay: bool, *,
                          close_allowed: bool = False) -> None:
        """Send a cut (True) or a restore (False): with `close_allowed`, the restore only arms
        the relay (允许合闸) and the resident closes it with the meter's button. Acknowledged is
        not moved: read it back."""
        ...

    async def close(self) -> None:
        ...


def check_address(protocol: str, unit_id: int) -> str | None:
    """What is wrong with `unit_id` as a meter address on a bus of `protocol`, or None."""
    if protocol == DLT645_TCP:
        if unit_id not in DLT645_ADDRESS_RANGE:
            return "a DL/T 645 address is 12 digits (000000000000–999999999998)"
        return None
    if protocol in (MODBUS_TCP, MODBUS_RTU_OVER_TCP):
        if unit_id not in MODBUS_UNIT_RANGE:
            return "a Modbus unit id is 1–247"
        return None
    return f"unknown protocol {protocol!r}"


def format_address(protocol: str, unit_id: int) -> str:
    """A meter's address as its nameplate shows it: 12 digits for DL/T 645."""
    return f"{unit_id:012d}" if protocol == DLT645_TCP else str(unit_id)
