"""A simulator of gateways with prepaid meters behind them, in each of our meter protocols.

A Modbus gateway (`modbus_tcp`, or `modbus_rtu_over_tcp`: the same server with pymodbus' RTU
framer, as a transparent serial server passes RTU frames) is a pymodbus 3.16 `ModbusTcpServer`
serving one `SimDevice` per meter plus a
`SimDevice(0, ...)` catch-all. A device's `action` hook is the meter: before a read is answered
it renders the `SimMeter` model into the registers; before a write is stored it applies the
write to the model, or refuses it with a Modbus exception code. (pymodbus 3.16 ignores the old
datastore overrides; the action hook is the way in.)

What the simulated meters do, as real ones do (docs/meters.md):
- energy accrues at `load_w` (times the hour's multiplier of a load `profile`) while the relay
  is closed, never goes backwards by itself, wraps at 2**32;
- an accepted relay command is acknowledged at once, counted, and moves the relay only after
  `relay_delay_s` (or never, in keep-power mode or with a welded contact); until then the relay
  reads its old state;
- FC06 is refused with exception 01 (unless the gateway's `fc06_accepted`), bad control words
  with 03, writes to read-only registers with 02; an offline meter or an unknown unit id gets
  0x0B from the gateway; a silent meter, or every unit of a silent gateway, gets no answer.

Faults a real installation shows, as fields a test may flip at any time: `SimMeter.welded` (a
cut is acknowledged and counted, the relay stays closed, no status bit says so),
`SimMeter.bypass_w` (energy keeps flowing while the relay is open: bypass, 窃电),
`SimMeter.jump_register()` and `SimMeter.set_energy_wh()` (the register jumps forward, or goes
backwards when a meter is reset or replaced), `SimMeter.keep_power`, `SimMeter.relay_fault`
(like welded, and the meter says so), `SimMeter.cover_open`, `SimGateway.silent` (connections
accepted, nothing answered), `SimGateway.stop()` (the gateway down: connections refused),
`SimGateway.fc06_accepted`. Every fault plays in every protocol (`feikong simulate --protocol`).

Model time is the meter's `clock()`: wall-clock seconds (Unix time), by default `wall_clock`,
which starts at `time.time()` and then moves with `time.monotonic()`, so it never steps back.
Inject another clock (a test's fake) to check a profile's hours without waiting.

pymodbus's server answers each request with the unit and transaction id of the *latest* request
on that connection, so an action must not keep a request waiting while the client sends the
next one: keep `bus_delay_s` below the client's timeout, and make a meter `silent` rather than
slow.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from meters.modbus import registers as r
from meters.modbus.codec import decode_allow_close, decode_relay_command, encode_block_values
from meters.protocol import (DLT645_ADDRESS_RANGE, DLT645_TCP, MODBUS_RTU_OVER_TCP, MODBUS_TCP,
                             PROTOCOLS, MeterSnapshot, check_address, format_address)

try:
    from zoneinfo import ZoneInfo

    LOCAL_TZ: dt.tzinfo = ZoneInfo("Asia/Shanghai")
except Exception:  # no tz database: China has kept UTC+8 without daylight saving since 1991
    LOCAL_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

FC_READ_HOLDING_REGISTERS = 3
FC_WRITE_SINGLE_REGISTER = 6
FC_WRITE_MULTIPLE_REGISTERS = 16
NOMINAL_VOLTAGE_DV = 2200  # 220.0 V
NOMINAL_FREQUENCY_CHZ = 5000  # 50.00 Hz
UNIT_IDS = range(1, 248)  # valid Modbus unit ids on a bus
MAX_PASSWORD = 9999
HOUR_S = 3600

# Load profiles: the multiplier of `load_w` for each local hour (Asia/Shanghai) 0..23.
PROFILES: dict[str, tuple[float, ...]] = {
    # night 00-06 0.3, day 06-18 1.0, evening 18-22 2.5, late evening 22-24 1.0
    "household": (0.3,) * 6 + (1.0,) * 12 + (2.5,) * 4 + (1.0,) * 2,
}

_WALL_AT_IMPORT = time.time()
_MONOTONIC_AT_IMPORT = time.monotonic()


def wall_clock() -> float:
    """Unix time that never steps back: `time.time()` at import plus monotonic time since."""
    return _WALL_AT_IMPORT + (time.monotonic() - _MONOTONIC_AT_IMPORT)


def _profile_table(profile: str | None) -> tuple[float, ...] | None:
    if profile is None:
        return None
    try:
        table = PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown load profile {profile!r} (known: {', '.join(PROFILES)})") from None
    if len(table) != 24:
        raise ValueError(f"load profile {profile!r} needs 24 hourly multipliers")
    return table


def profile_multiplier(profile: str | None, at: float) -> float:
    """The load multiplier at Unix time `at` (1.0 without a profile)."""
    table = _profile_table(profile)
    if table is None:
        return 1.0
    return table[dt.datetime.fromtimestamp(at, LOCAL_TZ).hour]


def profile_energy_wh(load_w: float, profile: str | None, start: float, end: float) -> float:
    """Energy (Wh) drawn by `load_w` under `profile` from `start` to `end` (Unix seconds).

    Piecewise over local hours: each part of the interval uses its own hour's multiplier.
    """
    if end <= start or load_w <= 0:
        return 0.0
    table = _profile_table(profile)
    if table is None:
        return load_w * (end - start) / HOUR_S
    joules = 0.0  # W·s
    t = start
    while t < end:
        local = dt.datetime.fromtimestamp(t, LOCAL_TZ)
        offset = local.utcoffset().total_seconds() if local.utcoffset() else 0.0
        boundary = (math.floor((t + offset) / HOUR_S) + 1) * HOUR_S - offset  # next local hour
        if boundary <= t:  # float rounding at an exact boundary
            boundary = t + HOUR_S
        step_end = min(boundary, end)
        joules += table[local.hour] * (step_end - t)
        t = step_end
    return load_w * joules / HOUR_S


@dataclass
class SimMeter:
    """The model of one meter. Times are the meter's `clock()` seconds (Unix time).

    Change fields freely from a test; call `advance()` first if energy accrued so far should
    use the old load, profile, bypass or relay state.
    """

    unit_id: int
    energy_wh: float = 0.0  # internal accumulator; register = int(energy_wh // 10) mod 2**32
    relay_open: bool = False
    load_w: float = 0.0  # energy accrues at this power (times the profile) while closed
    relay_delay_s: float = 0.0  # between an accepted command and the relay moving
    offline: bool = False  # the gateway answers exception 0x0B for this unit
    command_counter: int = 0
    keep_power: bool = False  # 保电: cuts are acknowledged and counted, the relay stays closed
    silent: bool = False  # neither the meter nor the gateway answers: the client times out
    password: int = 0
    remote_trip: bool = False  # opened by a remote cut (status bit), cleared by a restore
    welded: bool = False  # the contact never opens: cuts counted, relay closed, no status bit
    relay_fault: bool = False  # like welded, and the meter says so (its relay-fault flag)
    cover_open: bool = False  # the terminal cover is open (tamper flag)
    close_allowed: bool = False  # armed (允许合闸): `press_button()` closes the relay
    bypass_w: float = 0.0  # energy accrues at this power while the relay is open (窃电)
    profile: str | None = None  # None: constant load_w; else a name in PROFILES
    clock: Callable[[], float] = field(default=wall_clock, repr=False, compare=False)
    _accrued_at: float | None = field(default=None, init=False, repr=False, compare=False)
    _pending_open: bool | None = field(default=None, init=False, repr=False, compare=False)
    _pending_at: float = field(default=0.0, init=False, repr=False, compare=False)
    _timer: asyncio.TimerHandle | None = field(default=None, init=False, repr=False, compare=False)
    _fc06_words: dict[int, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _profile_table(self.profile)

    def add_energy_wh(self, wh: float) -> None:
        """Add consumed energy (a meter's register never goes backwards)."""
        if wh < 0:
            raise ValueError("energy only grows")
        self.energy_wh += wh

    def jump_register(self, wh: float) -> None:
        """Fault: the total energy register jumps forward by `wh` at once."""
        if not wh >= 0 or math.isinf(wh):
            raise ValueError("a jump goes forward by a finite number of Wh")
        self.energy_wh += wh

    def set_energy_wh(self, wh: float, now: float | None = None) -> None:
        """Set the register to `wh` at `now`, even backwards (a meter reset or replaced).

        Energy accrued up to `now` is settled first, so the register reads `wh` from `now` on.
        """
        if not wh >= 0 or math.isinf(wh):
            raise ValueError("energy is a finite number of Wh >= 0")
        self.advance(now)
        self.energy_wh = float(wh)

    @property
    def energy_raw(self) -> int:
        """The total energy register: 0.01 kWh units, modulo 2**32."""
        return int(self.energy_wh // r.ENERGY_WH_PER_UNIT) % r.ENERGY_WRAP

    @property
    def relay_register(self) -> int:
        return r.RELAY_STATE_OPEN if self.relay_open else r.RELAY_STATE_CLOSED

    @property
    def relay_pending(self) -> bool | None:
        """The state the relay is about to move to, or None."""
        return self._pending_open

    def now(self) -> float:
        """The meter's time (its `clock()`)."""
        return self.clock()

    def power_w(self, now: float | None = None) -> float:
        """The power flowing through the meter at `now`: the load (times its profile) while
        the relay is closed, the bypass while it is open."""
        if self.relay_open:
            return max(self.bypass_w, 0.0)
        now = self.clock() if now is None else now
        return max(self.load_w, 0.0) * profile_multiplier(self.profile, now)

    def advance(self, now: float | None = None) -> None:
        """Bring the model up to `now`: accrue energy, move the relay if its delay has passed."""
        now = self.clock() if now is None else now
        if self._pending_open is not None and now >= self._pending_at:
            self._accrue(self._pending_at)
            self._move_relay(self._pending_open)
        self._accrue(now)

    def accept_command(
        self, open_relay: bool, now: float, loop: asyncio.AbstractEventLoop | None = None,
        *, allow_close: bool = False,
    ) -> None:
        """Take an acknowledged relay command: count it, then move the relay.

        The relay moves `relay_delay_s` after `now` (at once if 0); until then it reads its old
        state. A newer command replaces a pending one. In keep-power mode a cut is counted but
        the relay never opens; with a welded contact a cut is counted and the relay does not
        open when its move is due. With `loop`, a timer also applies the move when it is due,
        so `relay_open` is right even if nobody reads the meter.
        """
        self.advance(now)
        self.command_counter = (self.command_counter + 1) % (
            r.COMMAND_COUNTER.datatype.max_value + 1
        )
        self.cancel_timer()
        self._pending_open = None
        if allow_close:  # 允许合闸: the relay stays as it is, armed for the button
            self.close_allowed = self.relay_open
            return
        if open_relay and self.keep_power:
            return
        if self.relay_delay_s <= 0:
            self._move_relay(open_relay)
            return
        self._pending_open = open_relay
        self._pending_at = now + self.relay_delay_s
        if loop is not None:
            self._timer = loop.call_later(self.relay_delay_s, self._on_relay_due)

    def press_button(self, now: float | None = None) -> bool:
        """The resident presses the meter's button: an armed relay closes. True if it did."""
        self.advance(now)
        if not (self.close_allowed and self.relay_open):
            return False
        self._move_relay(False)
        return True

    def cancel_timer(self) -> None:
        """Drop the timer (the pending move still happens at the next `advance`)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _state(self, now: float | None) -> tuple[int, int]:
        """Energy advanced to `now`; (active power in W, as the register can hold it, and the
        status bits)."""
        now = self.clock() if now is None else now
        self.advance(now)
        max_power = r.ACTIVE_POWER.datatype.max_value * r.POWER_W_PER_UNIT
        power_w = min(int(self.power_w(now)), max_power)
        power_w -= power_w % r.POWER_W_PER_UNIT
        status = 0
        if self.remote_trip and self.relay_open:
            status |= 1 << r.STATUS_REMOTE_TRIP
        if self.keep_power:
            status |= 1 << r.STATUS_KEEP_POWER
        if self.close_allowed and self.relay_open:
            status |= 1 << r.STATUS_CLOSE_ALLOWED
        if self.relay_fault:
            status |= 1 << r.STATUS_RELAY_FAULT
        if self.cover_open:
            status |= 1 << r.STATUS_COVER_OPEN
        return power_w, status

    @property
    def status_bits(self) -> int:
        """The status flags now (meters.protocol's, which our Modbus map's word carries)."""
        return self._state(None)[1]

    def snapshot(self, now: float | None = None) -> MeterSnapshot:
        """What the meter's registers say at `now`."""
        power_w, status = self._state(now)
        current_ca = min(
            power_w * 1000 // NOMINAL_VOLTAGE_DV, r.CURRENT.datatype.max_value
        )  # I[0.01 A] = P[W] / (U[0.1 V] / 10) * 100
        energy_raw = self.energy_raw
        return MeterSnapshot(
            energy_raw=energy_raw,
            energy_wh=energy_raw * r.ENERGY_WH_PER_UNIT,
            period_raw=(0, 0, energy_raw, 0),  # no time-of-use tariff: all of it is "flat"
            voltage_dv=NOMINAL_VOLTAGE_DV,
            current_ca=current_ca,
            power_w=power_w,
            relay_open=self.relay_open,
            status_bits=status,
            command_counter=self.command_counter,
            apparent_power_va=min(power_w, r.APPARENT_POWER.datatype.max_value),
            power_factor_milli=1000,
            frequency_chz=NOMINAL_FREQUENCY_CHZ,
        )

    def block_words(self, now: float | None = None) -> tuple[int, ...]:
        """The poll block's registers at `now`: what `snapshot` says, encoded (with the
        password), without building the snapshot (the simulator answers every poll with it)."""
        power_w, status = self._state(now)
        energy_raw = self.energy_raw
        return encode_block_values(
            energy_raw=energy_raw,
            period_raw=(0, 0, energy_raw, 0),  # no time-of-use tariff: all of it is "flat"
            password=self.password,
            voltage_dv=NOMINAL_VOLTAGE_DV,
            current_ca=min(power_w * 1000 // NOMINAL_VOLTAGE_DV, r.CURRENT.datatype.max_value),
            power_units=power_w // r.POWER_W_PER_UNIT,
            apparent_power_va=min(power_w, r.APPARENT_POWER.datatype.max_value),
            power_factor_milli=1000,
            frequency_chz=NOMINAL_FREQUENCY_CHZ,
            relay_state=self.relay_register,
            status_bits=status,
            command_counter=self.command_counter,
        )

    def _accrue(self, now: float) -> None:
        start = self._accrued_at
        if start is not None and now > start:
            if self.relay_open:
                if self.bypass_w > 0:
                    self.energy_wh += self.bypass_w * (now - start) / HOUR_S
            elif self.load_w > 0:
                self.energy_wh += profile_energy_wh(self.load_w, self.profile, start, now)
        if start is None or now > start:
            self._accrued_at = now

    def _move_relay(self, open_relay: bool) -> None:
        self._pending_open = None
        if open_relay and (self.welded or self.relay_fault):
            return  # the contact is fused: it stays closed (welded: and nothing says so)
        self.relay_open = open_relay
        self.remote_trip = open_relay
        self.close_allowed = False

    def _on_relay_due(self) -> None:
        self._timer = None
        if self._pending_open is None:
            return
        now = self.clock()
        if now < self._pending_at:  # an injected clock behind real time: the timer wins
            self._accrue(now)
            self._move_relay(self._pending_open)
        else:
            self.advance(now)


def _meter_layout() -> list[SimData]:
    """The poll block (reserved registers read 0) plus writable registers outside it."""
    layout = [SimData(r.BLOCK_START, count=r.BLOCK_COUNT, datatype=DataType.REGISTERS)]
    for reg in r.REGISTER_MAP.values():
        if reg.writable and not r.BLOCK_START <= reg.address < r.BLOCK_START + r.BLOCK_COUNT:
            layout.append(SimData(reg.address, count=reg.words, datatype=DataType.REGISTERS))
    return layout


def _whole_address_space() -> list[SimData]:
    return [SimData(0, count=0x10000, datatype=DataType.REGISTERS)]


def _overlaps(address: int, count: int, reg: r.Register) -> bool:
    return address < reg.end and reg.address < address + count


@dataclass
class SimGateway:
    """One gateway (one listening port) and the meters on its bus, speaking `protocol`: Modbus
    TCP, Modbus-RTU frames over TCP (a transparent serial server), or DL/T 645-2007 over TCP
    (`meters.dlt645.server`). The meters and their faults are the same for every protocol."""

    index: int
    meters: dict[int, SimMeter]
    protocol: str = MODBUS_TCP
    host: str = "127.0.0.1"
    port: int = 0  # 0 before the first start: the OS picks; afterwards the real port
    bus_delay_s: float = 0.0  # per transaction, one at a time, like an RS-485 bus
    server: Any = field(default=None, repr=False)  # ModbusTcpServer, or DL/T 645's server
    silent: bool = False  # accepts connections but answers no unit at all: clients time out
    fc06_accepted: bool = False  # FC06 writes one word (see `_write_single`); else exception 01
    _bus: asyncio.Lock | None = field(default=None, init=False, repr=False)

    @property
    def running(self) -> bool:
        return self.server is not None

    async def start(self) -> None:
        """Listen on `host:port` (on restart, the port it had before)."""
        if self.server is not None:
            return
        self._bus = asyncio.Lock()
        if self.protocol == DLT645_TCP:
            from meters.dlt645.server import Dlt645GatewayServer
            server = Dlt645GatewayServer(self)
            await server.start()  # OSError if it cannot listen
            self.server = server
            self.port = server.port
            for meter in self.meters.values():
                meter.advance()
            return
        devices = [
            SimDevice(
                unit_id,
                simdata=_meter_layout(),
                action=functools.partial(self._meter_action, meter),
            )
            for unit_id, meter in self.meters.items()
        ]
        devices.append(SimDevice(0, simdata=_whole_address_space(), action=self._no_such_meter))
        # ignore_missing_devices: a NoSuchIdException from an action means "send no answer".
        server = ModbusTcpServer(
            devices, address=(self.host, self.port), ignore_missing_devices=True,
            framer=FramerType.RTU if self.protocol == MODBUS_RTU_OVER_TCP else FramerType.SOCKET,
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus reports a failed bind this way
            raise OSError(f"gateway {self.index}: cannot listen on {self.host}:{self.port}") from exc
        self.server = server
        self.port = server.transport.sockets[0].getsockname()[1]
        for meter in self.meters.values():
            meter.advance()

    async def stop(self) -> None:
        """Stop listening and drop every client connection; the meters keep running."""
        if self.server is not None:
            server, self.server = self.server, None
            await server.shutdown()

    async def _no_such_meter(self, *_args: object) -> ExcCodes:
        """The catch-all device: the gateway finds nobody at this unit id."""
        if self.silent:
            raise NoSuchIdException("gateway is silent")  # server sends nothing
        return ExcCodes.GATEWAY_NO_RESPONSE

    async def _meter_action(
        self,
        meter: SimMeter,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus hook, called before a request to this meter is answered."""
        if self.silent:
            raise NoSuchIdException(f"gateway {self.index} is silent")  # server sends nothing
        if function_code == FC_WRITE_SINGLE_REGISTER and set_values is None:
            return None  # pymodbus reads an accepted FC06 write back for its echo
        if self.bus_delay_s > 0 and self._bus is not None:
            async with self._bus:
                await asyncio.sleep(self.bus_delay_s)
        if meter.silent:
            raise NoSuchIdException(f"unit {meter.unit_id} is silent")  # server sends nothing
        if meter.offline:
            return ExcCodes.GATEWAY_NO_RESPONSE
        now = meter.now()
        if function_code == FC_READ_HOLDING_REGISTERS and set_values is None:
            offset = r.BLOCK_START - start_address
            registers[offset : offset + r.BLOCK_COUNT] = meter.block_words(now)
            return None
        if function_code == FC_WRITE_MULTIPLE_REGISTERS and set_values is not None:
            return self._write(meter, address, [int(v) for v in set_values], now)
        if function_code == FC_WRITE_SINGLE_REGISTER and set_values and self.fc06_accepted:
            return self._write_single(meter, address, int(set_values[0]), now)
        return ExcCodes.ILLEGAL_FUNCTION

    def _write(self, meter: SimMeter, address: int, values: list[int], now: float) -> ExcCodes | None:
        """Apply an FC16 write to the model; a relay command moves the relay (after its delay)."""
        control = r.RELAY_CONTROL
        if address == control.address and len(values) == control.words:
            meter._fc06_words.clear()
            if decode_allow_close(values):
                meter.accept_command(False, now, asyncio.get_running_loop(), allow_close=True)
                return None
            command = decode_relay_command(values)
            if command is None:
                return ExcCodes.ILLEGAL_VALUE
            meter.accept_command(command, now, asyncio.get_running_loop())
            return None
        if _overlaps(address, len(values), control):
            return ExcCodes.ILLEGAL_VALUE
        if address == r.PASSWORD.address and len(values) == r.PASSWORD.words:
            if values[0] > MAX_PASSWORD:
                return ExcCodes.ILLEGAL_VALUE
            meter.password = values[0]
            return None
        return ExcCodes.ILLEGAL_ADDRESS  # read-only registers

    def _write_single(self, meter: SimMeter, address: int, value: int, now: float) -> ExcCodes | None:
        """Apply an FC06 write (only with `fc06_accepted`): one word at a time.

        The relay control words are latched in order; the write to the last word completes
        the command, so FC06 0x0057=1 then FC06 0x0058=1 is the cut that FC16 [1, 1] is. A word
        that no command has at that place, or a last word without the ones before it, is
        exception 03 (and drops the latch). Other registers behave as a one-word FC16.
        """
        control = r.RELAY_CONTROL
        if not control.address <= address < control.end:
            return self._write(meter, address, [value], now)
        place = address - control.address
        commands = (r.RELAY_CONTROL_CUT, r.RELAY_CONTROL_RESTORE)
        latched = meter._fc06_words
        if value not in {words[place] for words in commands} or any(
            p not in latched for p in range(place)
        ):
            latched.clear()
            return ExcCodes.ILLEGAL_VALUE
        for later in [p for p in latched if p >= place]:
            del latched[later]
        latched[place] = value
        if place < control.words - 1:
            return None
        words = [latched[p] for p in range(control.words)]
        latched.clear()
        command = decode_relay_command(words)
        if command is None:
            return ExcCodes.ILLEGAL_VALUE
        meter.accept_command(command, now, asyncio.get_running_loop())
        return None


class Simulator:
    """Several gateways in one asyncio loop.

    `gateways` is either a list of unit-id lists (one per gateway) or a number of gateways,
    each with unit ids 1..`meters_per_gateway`. With `base_port` 0 each gateway gets a port
    from the OS; otherwise gateway i listens on `base_port + i`. `profile` (a name in
    PROFILES), `fc06_accepted` and `clock` apply to every meter or gateway; change them per
    meter or gateway afterwards if needed.
    """

    def __init__(
        self,
        gateways: list[list[int]] | int,
        meters_per_gateway: int = 0,
        *,
        host: str = "127.0.0.1",
        base_port: int = 0,
        relay_delay_s: float = 0.0,
        load_w: float = 0.0,
        bus_delay_s: float = 0.0,
        profile: str | None = None,
        fc06_accepted: bool = False,
        clock: Callable[[], float] | None = None,
        protocol: str | Sequence[str] = MODBUS_TCP,
    ) -> None:
        _profile_table(profile)
        if isinstance(gateways, int):
            unit_lists = [list(range(1, meters_per_gateway + 1)) for _ in range(gateways)]
        else:
            unit_lists = [list(units) for units in gateways]
        protocols = ([protocol] * len(unit_lists) if isinstance(protocol, str)
                     else list(protocol))
        if len(protocols) != len(unit_lists):
            raise ValueError("one protocol per gateway")
        self.gateways: list[SimGateway] = []
        for index, units in enumerate(unit_lists):
            _check_unit_ids(index, units, protocols[index])
            meters = {
                unit: SimMeter(
                    unit,
                    relay_delay_s=relay_delay_s,
                    load_w=load_w,
                    profile=profile,
                    clock=clock or wall_clock,
                )
                for unit in units
            }
            port = base_port + index if base_port else 0
            self.gateways.append(
                SimGateway(
                    index,
                    meters,
                    protocol=protocols[index],
                    host=host,
                    port=port,
                    bus_delay_s=bus_delay_s,
                    fc06_accepted=fc06_accepted,
                )
            )

    async def start(self) -> None:
        """Start every gateway; if one cannot listen, stop the others and raise OSError."""
        try:
            for gateway in self.gateways:
                await gateway.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for gateway in self.gateways:
            await gateway.stop()
            for meter in gateway.meters.values():
                meter.cancel_timer()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def meter(self, gateway_index: int, unit_id: int) -> SimMeter:
        return self.gateways[gateway_index].meters[unit_id]

    def all_meters(self) -> Iterable[tuple[SimGateway, SimMeter]]:
        for gateway in self.gateways:
            for meter in gateway.meters.values():
                yield gateway, meter

    async def wait_relay(
        self, gateway_index: int, unit_id: int, open_relay: bool, timeout: float = 5.0
    ) -> bool:
        """Wait until the meter's relay is in the given state; False if `timeout` passes first."""
        meter = self.meter(gateway_index, unit_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            meter.advance()
            if meter.relay_open == open_relay:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)


def _check_unit_ids(index: int, units: Sequence[int], protocol: str = MODBUS_TCP) -> None:
    if len(set(units)) != len(units):
        raise ValueError(f"gateway {index}: duplicate unit ids")
    for unit in units:
        if protocol in (MODBUS_TCP, MODBUS_RTU_OVER_TCP) and unit not in UNIT_IDS:
            raise ValueError(f"gateway {index}: unit id {unit} outside 1..247")
        if (problem := check_address(protocol, unit)) is not None:
            raise ValueError(f"gateway {index}: unit {unit}: {problem}")


def describe(sim: Simulator) -> list[str]:
    """One line per gateway: where it listens, which unit ids it has (DL/T 645 addresses in
    their 12 digits) and its protocol."""
    lines = []
    for gateway in sim.gateways:
        units = [format_address(gateway.protocol, unit) for unit in sorted(gateway.meters)]
        span = f"{units[0]}-{units[-1]}" if units else "none"
        lines.append(
            f"gateway {gateway.index}: {gateway.host}:{gateway.port}, "
            f"{len(units)} meters (unit ids {span}), {gateway.protocol}"
        )
    return lines


async def serve_forever(sim: Simulator, announce: Callable[[str], None] | None = None) -> None:
    """Start the simulator, announce where it listens, and run until cancelled."""
    await sim.start()
    try:
        for line in describe(sim):
            (announce or print)(line)
        await asyncio.Event().wait()
    finally:
        await sim.stop()


# --- `feikong simulate`: flags, a JSON config, injected faults ---------------------------------

DEFAULTS: dict[str, Any] = {
    "gateways": 1,  # a number, or (config only) a list of unit-id lists, one per gateway
    "meters": 10,
    "host": "127.0.0.1",
    "base_port": 15020,
    "relay_delay": 0.0,
    "load_w": 0.0,
    "bus_delay": 0.0,
    "profile": None,
    "energy_wh": 0.0,
    "fc06": False,
    "fault_delay": 0.0,
    "protocol": MODBUS_TCP,  # one of PROTOCOLS, or (config only) a list of them, one per gateway
}

# Fault kinds (flag `--kind` with "_" as "-", config key `kind`) and the form of their value.
FAULT_FORMS: dict[str, str] = {
    "offline": "G:U",
    "silent": "G:U",
    "keep_power": "G:U",
    "welded": "G:U",
    "bypass": "G:U:W",
    "silent_gateway": "G",
    "relay_fault": "G:U",
    "cover_open": "G:U",
    "gateway_down": "G",
    "jump": "G:U:WH",
    "backwards": "G:U:WH",
}
# One-off faults applied after start (now, or after `fault_delay`): the register events, and a
# gateway going down (it must have listened first, to have its port).
EVENT_KINDS = frozenset({"jump", "backwards", "gateway_down"})
MAX_GATEWAYS = 1000


class UsageError(ValueError):
    """A bad flag or config value; the message names the flag or key."""


@dataclass(frozen=True)
class Fault:
    """One injected fault: `kind` from FAULT_FORMS, on gateway `gateway` (unit `unit`)."""

    kind: str
    gateway: int
    unit: int | None = None
    amount: float = 0.0  # W for bypass, Wh for jump and backwards
    origin: str = ""  # where it was given, for error messages

    @property
    def is_event(self) -> bool:
        return self.kind in EVENT_KINDS

    def __str__(self) -> str:
        parts = [str(self.gateway)]
        if self.unit is not None:
            parts.append(str(self.unit))
        if FAULT_FORMS[self.kind].count(":") == 2:
            parts.append(f"{self.amount:g}")
        return f"{self.kind.replace('_', '-')} {':'.join(parts)}"


def _whole(lo: int, hi: int, what: str = "") -> Callable[[str], int]:
    prefix = f"{what}: " if what else ""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise ValueError(f"{prefix}expected a whole number, got {text!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"{prefix}must be {lo}..{hi}, got {value}")
        return value

    return convert


def _non_negative(text: str, what: str = "") -> float:
    prefix = f"{what}: " if what else ""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{prefix}expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{prefix}must be a finite number >= 0, got {text!r}")
    return value


def _profile_name(text: str) -> str | None:
    if text in ("none", ""):
        return None
    if text not in PROFILES:
        raise ValueError(f"unknown profile {text!r} (choose from {', '.join([*PROFILES, 'none'])})")
    return text


def parse_fault(kind: str, text: str, origin: str = "") -> Fault:
    """Parse a fault value such as "0:3" or "1:2:300" (form FAULT_FORMS[kind])."""
    form = FAULT_FORMS[kind]
    parts = text.split(":")
    if len(parts) != form.count(":") + 1:
        raise ValueError(f"expected {form}, got {text!r}")
    gateway = _whole(0, MAX_GATEWAYS - 1, "G")(parts[0])
    # U: a Modbus unit id or a DL/T 645 address (as its number); `_fault_target` checks that
    # the gateway has it.
    unit = (_whole(0, DLT645_ADDRESS_RANGE.stop - 1, "U")(parts[1]) if len(parts) > 1
            else None)
    amount = _non_negative(parts[2], form.split(":")[2]) if len(parts) > 2 else 0.0
    return Fault(kind, gateway, unit, amount, origin or f"--{kind.replace('_', '-')} {text}")


def _protocol_name(text: str) -> str:
    if text not in PROTOCOLS:
        raise ValueError(f"unknown protocol {text!r} (choose from {', '.join(PROTOCOLS)})")
    return text


def _flag_type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse `type`: a ValueError becomes argparse's "argument --flag: message"."""

    @functools.wraps(convert)
    def wrapped(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return wrapped


SCALAR_FLAGS: dict[str, tuple[Callable[[str], Any], str, str]] = {
    # key: (converter, metavar, help)
    "gateways": (_whole(1, MAX_GATEWAYS), "N", "number of gateways"),
    "meters": (_whole(1, 247), "N",
               "meters per gateway, unit ids 1..N (DL/T 645: addresses 000000000001..N)"),
    "host": (str, "HOST", "address to listen on"),
    "base_port": (_whole(0, 65535), "PORT", "gateway i listens on PORT+i; 0: ports from the OS"),
    "relay_delay": (_non_negative, "S", "seconds between an accepted command and the relay moving"),
    "load_w": (_non_negative, "W", "load of every meter while its relay is closed"),
    "bus_delay": (_non_negative, "S", "seconds per bus transaction (one at a time per gateway)"),
    "profile": (_profile_name, "NAME", f"load profile: {', '.join(PROFILES)} or none"),
    "energy_wh": (_non_negative, "WH", "every meter's energy register at start"),
    "fault_delay": (_non_negative, "S",
                    "apply --jump/--backwards/--gateway-down S seconds after start"),
    "protocol": (_protocol_name, "NAME", f"what every gateway speaks: {', '.join(PROTOCOLS)}"),
}

FAULT_HELP = {
    "offline": "meter U of gateway G is offline: Modbus gateways answer 0x0B for it, a "
               "DL/T 645 bus is silent",
    "silent": "meter U of gateway G never answers",
    "keep_power": "meter U of gateway G is in keep-power mode (保电, in its status): Modbus "
                  "acknowledges a cut, DL/T 645 refuses it; the relay stays closed",
    "welded": "meter U's relay never opens; no status bit says so",
    "bypass": "meter U draws W watts while its relay is open",
    "silent_gateway": "gateway G accepts connections and answers no unit at all",
    "relay_fault": "meter U's relay never opens and the meter reports a relay fault",
    "cover_open": "meter U's cover is open (tamper): Modbus status bit 7; DL/T 645 has no "
                  "status bit for it (an event record, not read)",
    "gateway_down": "gateway G stops listening (connection refused), after start",
    "jump": "meter U's register jumps forward by WH, after start",
    "backwards": "meter U's register goes back by WH (not below 0), after start",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feikong simulate",
        description="Simulate gateways with prepaid meters, speaking Modbus TCP, Modbus-RTU "
        "over TCP or DL/T 645-2007 over TCP. Flags override --config; "
        "fault flags repeat and add to the config's. See docs/simulator.md.",
    )
    parser.add_argument("--config", metavar="FILE", help="JSON settings and faults (keys as flags)")
    for key, (convert, metavar, text) in SCALAR_FLAGS.items():
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            dest=key,
            type=convert if convert is str else _flag_type(convert),
            metavar=metavar,
            default=None,
            help=f"{text} (default: {DEFAULTS[key]})",
        )
    parser.add_argument(
        "--fc06",
        action="store_true",
        default=None,
        help="accept FC06, one word at a time (default: refused with exception 01)",
    )
    for kind, form in FAULT_FORMS.items():
        parser.add_argument(
            f"--{kind.replace('_', '-')}",
            dest="faults",
            action="append",
            metavar=form,
            type=_flag_type(functools.partial(parse_fault, kind)),
            help=FAULT_HELP[kind] + " (repeatable)",
        )
    return parser


def _json_number(convert: Callable[[str], Any]) -> Callable[[Any], Any]:
    def from_json(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {json.dumps(value)}")
        return convert(str(value))

    return from_json


def _json_string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {json.dumps(value)}")
    return value


def _json_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {json.dumps(value)}")
    return value


def _json_profile(value: Any) -> str | None:
    if value is None:
        return None
    return _profile_name(_json_string(value))


def _json_gateways(value: Any) -> int | list[list[int]]:
    if isinstance(value, list):
        if not value:
            raise ValueError("expected at least one gateway")
        for units in value:
            if not isinstance(units, list) or not all(
                isinstance(u, int) and not isinstance(u, bool) for u in units
            ):
                raise ValueError("expected a number or a list of unit-id lists, e.g. [[1, 2], [5]]")
        for index, units in enumerate(value):  # the addresses' range: with the protocol
            if len(set(units)) != len(units):
                raise ValueError(f"gateway {index}: duplicate unit ids")
        return value
    return _json_number(_whole(1, MAX_GATEWAYS))(value)


def _json_protocol(value: Any) -> str | list[str]:
    if isinstance(value, list):
        if not value:
            raise ValueError("expected at least one protocol")
        return [_protocol_name(_json_string(item)) for item in value]
    return _protocol_name(_json_string(value))


CONFIG_KEYS: dict[str, Callable[[Any], Any]] = {
    "gateways": _json_gateways,
    "meters": _json_number(_whole(1, 247)),
    "host": _json_string,
    "base_port": _json_number(_whole(0, 65535)),
    "relay_delay": _json_number(_non_negative),
    "load_w": _json_number(_non_negative),
    "bus_delay": _json_number(_non_negative),
    "profile": _json_profile,
    "energy_wh": _json_number(_non_negative),
    "fc06": _json_bool,
    "fault_delay": _json_number(_non_negative),
    "protocol": _json_protocol,  # a name, or a list of names: one per gateway
}


def load_config(path: str) -> tuple[dict[str, Any], list[Fault]]:
    """Read a JSON config: settings keyed as the flags (`load_w` or `load-w`), and fault lists.

    A fault entry is a string in the flag's form ("0:3"), or a list of its numbers ([0, 3]).
    """
    where = f"--config {path}"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a JSON object")
    values: dict[str, Any] = {}
    faults: list[Fault] = []
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        label = f"{where}: key {raw_key!r}"
        try:
            if key in CONFIG_KEYS:
                values[key] = CONFIG_KEYS[key](value)
            elif key in FAULT_FORMS:
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, list):
                        text = ":".join(json.dumps(part) for part in item)
                    elif isinstance(item, (str, int)) and not isinstance(item, bool):
                        text = str(item)
                    else:
                        raise ValueError(f"expected {FAULT_FORMS[key]}, got {json.dumps(item)}")
                    faults.append(parse_fault(key, text, f"{label}: {text}"))
            else:
                known = ", ".join([*CONFIG_KEYS, *FAULT_FORMS])
                raise ValueError(f"unknown key (known: {known})")
        except ValueError as exc:
            raise UsageError(f"{label}: {exc}") from None
    return values, faults


@dataclass
class SimulatePlan:
    """What `feikong simulate` runs: merged settings and the faults to inject."""

    settings: dict[str, Any]
    origins: dict[str, str]  # key -> the flag or config key it came from (for messages)
    faults: list[Fault]


def make_plan(args: argparse.Namespace) -> SimulatePlan:
    """Defaults, then the config file, then flags; faults from both add up."""
    settings = dict(DEFAULTS)
    origins = {key: f"--{key.replace('_', '-')}" for key in DEFAULTS}
    faults: list[Fault] = []
    if args.config:
        values, faults = load_config(args.config)
        settings.update(values)
        origins.update({key: f"--config {args.config}: key {key!r}" for key in values})
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
            origins[key] = f"--{key.replace('_', '-')}"
    faults.extend(args.faults or [])
    return SimulatePlan(settings, origins, faults)


def _fault_target(sim: Simulator, fault: Fault) -> tuple[SimGateway, SimMeter | None]:
    if not 0 <= fault.gateway < len(sim.gateways):
        raise UsageError(
            f"{fault.origin}: no gateway {fault.gateway} (gateways 0..{len(sim.gateways) - 1})"
        )
    gateway = sim.gateways[fault.gateway]
    if fault.unit is None:
        return gateway, None
    if fault.unit not in gateway.meters:
        raise UsageError(f"{fault.origin}: gateway {fault.gateway} has no unit {fault.unit}")
    return gateway, gateway.meters[fault.unit]


def apply_fault(sim: Simulator, fault: Fault) -> None:
    """Inject one fault into a simulator (UsageError if its gateway or unit does not exist)."""
    gateway, meter = _fault_target(sim, fault)
    if fault.kind == "silent_gateway":
        gateway.silent = True
        return
    if fault.kind == "gateway_down":
        raise ValueError("gateway_down stops a running gateway: apply it with apply_event")
    assert meter is not None
    if fault.kind == "offline":
        meter.offline = True
    elif fault.kind == "silent":
        meter.silent = True
    elif fault.kind == "keep_power":
        meter.keep_power = True
    elif fault.kind == "welded":
        meter.welded = True
    elif fault.kind == "relay_fault":
        meter.relay_fault = True
    elif fault.kind == "cover_open":
        meter.cover_open = True
    elif fault.kind == "bypass":
        meter.advance()
        meter.bypass_w = fault.amount
    elif fault.kind == "jump":
        meter.jump_register(fault.amount)
    elif fault.kind == "backwards":
        meter.advance()
        meter.set_energy_wh(max(meter.energy_wh - fault.amount, 0.0))
    else:
        raise ValueError(f"unknown fault kind {fault.kind!r}")


async def apply_event(sim: Simulator, fault: Fault) -> None:
    """Inject a fault into a running simulator: `gateway_down` stops its gateway listening (a
    client's connect is refused, as when a concentrator is unplugged; the meters behind it
    keep running, and `await sim.gateways[g].start()` brings it back on the same port); any
    other kind as `apply_fault`."""
    if fault.kind == "gateway_down":
        gateway, _meter = _fault_target(sim, fault)
        await gateway.stop()
        return
    apply_fault(sim, fault)


def build_simulator(plan: SimulatePlan) -> Simulator:
    """The simulator a plan describes, with its standing faults applied (events are not)."""
    s, origins = plan.settings, plan.origins
    count = len(s["gateways"]) if isinstance(s["gateways"], list) else s["gateways"]
    if s["base_port"] and s["base_port"] + count - 1 > 65535:
        raise UsageError(
            f"{origins['base_port']}: {s['base_port']} + {count} gateways passes port 65535"
        )
    if isinstance(s["protocol"], list) and len(s["protocol"]) != count:
        raise UsageError(f"{origins['protocol']}: {len(s['protocol'])} protocols for {count} "
                         "gateways (one per gateway)")
    try:
        sim = Simulator(
            s["gateways"],
            s["meters"],
            host=s["host"],
            base_port=s["base_port"],
            relay_delay_s=s["relay_delay"],
            load_w=s["load_w"],
            bus_delay_s=s["bus_delay"],
            profile=s["profile"],
            fc06_accepted=s["fc06"],
            protocol=s["protocol"],
        )
    except ValueError as exc:
        raise UsageError(f"{origins['gateways']}: {exc}") from None
    for _gateway, meter in sim.all_meters():
        meter.energy_wh = float(s["energy_wh"])
    for fault in plan.faults:
        _fault_target(sim, fault)  # every target checked before anything starts
    for fault in plan.faults:
        if not fault.is_event:
            apply_fault(sim, fault)
    return sim


async def run_plan(
    sim: Simulator,
    plan: SimulatePlan,
    announce: Callable[[str], None] = print,
) -> None:
    """Start, apply the events (register jumps, a gateway going down: now, or after
    `fault_delay`), announce, run forever.

    The gateway lines come first ("gateway {i}: {host}:{port}, ..."), then one "fault: ..."
    line per injected fault.
    """
    delay = plan.settings["fault_delay"]
    events = [fault for fault in plan.faults if fault.is_event]
    await sim.start()
    try:
        if delay <= 0:
            for fault in events:
                await apply_event(sim, fault)
        for line in describe(sim):
            announce(line)
        for fault in plan.faults:
            if not fault.is_event or delay <= 0:
                announce(f"fault: {fault}")
        if events and delay > 0:
            await asyncio.sleep(delay)
            for fault in events:
                await apply_event(sim, fault)
                announce(f"fault: {fault}")
        await asyncio.Event().wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    """CLI entry: run the simulator until Ctrl-C. Bad flags or config: exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `feikong simulate -- --gateways 2 ...`
        argv = argv[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a bad flag (2, message printed)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        plan = make_plan(args)
        sim = build_simulator(plan)
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run_plan(sim, plan, announce=lambda line: print(line, flush=True)))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
