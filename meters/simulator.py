"""A Modbus TCP simulator of gateways with prepaid meters behind them.

Each gateway is a pymodbus 3.16 `ModbusTcpServer` serving one `SimDevice` per meter plus a
`SimDevice(0, ...)` catch-all. A device's `action` hook is the meter: before a read is answered
it renders the `SimMeter` model into the registers; before a write is stored it applies the
write to the model, or refuses it with a Modbus exception code. (pymodbus 3.16 ignores the old
datastore overrides; the action hook is the way in.)

What the simulated meters do, as real ones do (METERS.md):
- energy accrues at `load_w` while the relay is closed, never goes backwards, wraps at 2**32;
- an accepted relay command is acknowledged at once, counted, and moves the relay only after
  `relay_delay_s` (or never, in keep-power mode); until then the relay reads its old state;
- FC06 is refused with exception 01, bad control words with 03, writes to read-only registers
  with 02; an offline meter or an unknown unit id gets 0x0B from the gateway; a silent meter
  gets no answer at all.

pymodbus's server answers each request with the unit and transaction id of the *latest* request
on that connection, so an action must not keep a request waiting while the client sends the
next one: keep `bus_delay_s` below the client's timeout, and make a meter `silent` rather than
slow.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from meters import registers as r
from meters.codec import MeterSnapshot, decode_relay_command, encode_block

FC_READ_HOLDING_REGISTERS = 3
FC_WRITE_MULTIPLE_REGISTERS = 16
NOMINAL_VOLTAGE_DV = 2200  # 220.0 V
NOMINAL_FREQUENCY_CHZ = 5000  # 50.00 Hz
UNIT_IDS = range(1, 248)  # valid Modbus unit ids on a bus
MAX_PASSWORD = 9999


@dataclass
class SimMeter:
    """The model of one meter. Times are `time.monotonic()` seconds.

    Change fields freely from a test; call `advance()` first if energy accrued so far should
    use the old load or relay state.
    """

    unit_id: int
    energy_wh: float = 0.0  # internal accumulator; register = int(energy_wh // 10) mod 2**32
    relay_open: bool = False
    load_w: float = 0.0  # energy accrues at this power while the relay is closed
    relay_delay_s: float = 0.0  # between an accepted command and the relay moving
    offline: bool = False  # the gateway answers exception 0x0B for this unit
    command_counter: int = 0
    keep_power: bool = False  # 保电: cuts are acknowledged and counted, the relay stays closed
    silent: bool = False  # neither the meter nor the gateway answers: the client times out
    password: int = 0
    remote_trip: bool = False  # opened by a remote cut (status bit), cleared by a restore
    _accrued_at: float | None = field(default=None, init=False, repr=False, compare=False)
    _pending_open: bool | None = field(default=None, init=False, repr=False, compare=False)
    _pending_at: float = field(default=0.0, init=False, repr=False, compare=False)
    _timer: asyncio.TimerHandle | None = field(default=None, init=False, repr=False, compare=False)

    def add_energy_wh(self, wh: float) -> None:
        """Add consumed energy (a meter's register never goes backwards)."""
        if wh < 0:
            raise ValueError("energy only grows")
        self.energy_wh += wh

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

    def advance(self, now: float | None = None) -> None:
        """Bring the model up to `now`: accrue energy, move the relay if its delay has passed."""
        now = time.monotonic() if now is None else now
        if self._pending_open is not None and now >= self._pending_at:
            self._accrue(self._pending_at)
            self._move_relay(self._pending_open)
        self._accrue(now)

    def accept_command(
        self, open_relay: bool, now: float, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Take an acknowledged relay command: count it, then move the relay.

        The relay moves `relay_delay_s` after `now` (at once if 0); until then it reads its old
        state. A newer command replaces a pending one. In keep-power mode a cut is counted but
        the relay never opens. With `loop`, a timer also applies the move when it is due, so
        `relay_open` is right even if nobody reads the meter.
        """
        self.advance(now)
        self.command_counter = (self.command_counter + 1) % (
            r.COMMAND_COUNTER.datatype.max_value + 1
        )
        self.cancel_timer()
        self._pending_open = None
        if open_relay and self.keep_power:
            return
        if self.relay_delay_s <= 0:
            self._move_relay(open_relay)
            return
        self._pending_open = open_relay
        self._pending_at = now + self.relay_delay_s
        if loop is not None:
            self._timer = loop.call_later(self.relay_delay_s, self._on_relay_due)

    def cancel_timer(self) -> None:
        """Drop the timer (the pending move still happens at the next `advance`)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def snapshot(self, now: float | None = None) -> MeterSnapshot:
        """What the meter's registers say at `now`."""
        self.advance(now)
        closed = not self.relay_open
        max_power = r.ACTIVE_POWER.datatype.max_value * r.POWER_W_PER_UNIT
        power_w = min(max(int(self.load_w), 0), max_power) if closed else 0
        power_w -= power_w % r.POWER_W_PER_UNIT
        current_ca = min(
            power_w * 1000 // NOMINAL_VOLTAGE_DV, r.CURRENT.datatype.max_value
        )  # I[0.01 A] = P[W] / (U[0.1 V] / 10) * 100
        status = 0
        if self.remote_trip and self.relay_open:
            status |= 1 << r.STATUS_REMOTE_TRIP
        if self.keep_power:
            status |= 1 << r.STATUS_KEEP_POWER
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

    def _accrue(self, now: float) -> None:
        if self._accrued_at is not None and now > self._accrued_at:
            if not self.relay_open and self.load_w > 0:
                self.energy_wh += self.load_w * (now - self._accrued_at) / 3600
        if self._accrued_at is None or now > self._accrued_at:
            self._accrued_at = now

    def _move_relay(self, open_relay: bool) -> None:
        self._pending_open = None
        self.relay_open = open_relay
        self.remote_trip = open_relay

    def _on_relay_due(self) -> None:
        self._timer = None
        if self._pending_open is not None:
            self.advance(max(time.monotonic(), self._pending_at))


def _meter_layout() -> list[SimData]:
    """The poll block (reserved registers read 0) plus writable registers outside it."""
    layout = [SimData(r.BLOCK_START, count=r.BLOCK_COUNT, datatype=DataType.REGISTERS)]
    for reg in r.REGISTER_MAP.values():
        if reg.writable and not r.BLOCK_START <= reg.address < r.BLOCK_START + r.BLOCK_COUNT:
            layout.append(SimData(reg.address, count=reg.words, datatype=DataType.REGISTERS))
    return layout


def _whole_address_space() -> list[SimData]:
    return [SimData(0, count=0x10000, datatype=DataType.REGISTERS)]


async def _no_such_meter(*_args: object) -> ExcCodes:
    """The catch-all device: the gateway finds nobody at this unit id."""
    return ExcCodes.GATEWAY_NO_RESPONSE


def _overlaps(address: int, count: int, reg: r.Register) -> bool:
    return address < reg.end and reg.address < address + count


@dataclass
class SimGateway:
    """One Modbus TCP gateway (one listening port) and the meters on its bus."""

    index: int
    meters: dict[int, SimMeter]
    host: str = "127.0.0.1"
    port: int = 0  # 0 before the first start: the OS picks; afterwards the real port
    bus_delay_s: float = 0.0  # per transaction, one at a time, like an RS-485 bus
    server: ModbusTcpServer | None = field(default=None, repr=False)
    _bus: asyncio.Lock | None = field(default=None, init=False, repr=False)

    @property
    def running(self) -> bool:
        return self.server is not None

    async def start(self) -> None:
        """Listen on `host:port` (on restart, the port it had before)."""
        if self.server is not None:
            return
        self._bus = asyncio.Lock()
        devices = [
            SimDevice(
                unit_id,
                simdata=_meter_layout(),
                action=functools.partial(self._meter_action, meter),
            )
            for unit_id, meter in self.meters.items()
        ]
        devices.append(SimDevice(0, simdata=_whole_address_space(), action=_no_such_meter))
        # ignore_missing_devices: a NoSuchIdException from an action means "send no answer".
        server = ModbusTcpServer(
            devices, address=(self.host, self.port), ignore_missing_devices=True
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
        if self.bus_delay_s > 0 and self._bus is not None:
            async with self._bus:
                await asyncio.sleep(self.bus_delay_s)
        if meter.silent:
            raise NoSuchIdException(f"unit {meter.unit_id} is silent")  # server sends nothing
        if meter.offline:
            return ExcCodes.GATEWAY_NO_RESPONSE
        now = time.monotonic()
        if function_code == FC_READ_HOLDING_REGISTERS and set_values is None:
            offset = r.BLOCK_START - start_address
            words = encode_block(meter.snapshot(now), password=meter.password)
            registers[offset : offset + r.BLOCK_COUNT] = words
            return None
        if function_code == FC_WRITE_MULTIPLE_REGISTERS and set_values is not None:
            return self._write(meter, address, [int(v) for v in set_values], now)
        return ExcCodes.ILLEGAL_FUNCTION

    def _write(self, meter: SimMeter, address: int, values: list[int], now: float) -> ExcCodes | None:
        """Apply an FC16 write to the model; a relay command moves the relay (after its delay)."""
        control = r.RELAY_CONTROL
        if address == control.address and len(values) == control.words:
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


class Simulator:
    """Several gateways in one asyncio loop.

    `gateways` is either a list of unit-id lists (one per gateway) or a number of gateways,
    each with unit ids 1..`meters_per_gateway`. With `base_port` 0 each gateway gets a port
    from the OS; otherwise gateway i listens on `base_port + i`.
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
    ) -> None:
        if isinstance(gateways, int):
            unit_lists = [list(range(1, meters_per_gateway + 1)) for _ in range(gateways)]
        else:
            unit_lists = [list(units) for units in gateways]
        self.gateways: list[SimGateway] = []
        for index, units in enumerate(unit_lists):
            _check_unit_ids(index, units)
            meters = {
                unit: SimMeter(unit, relay_delay_s=relay_delay_s, load_w=load_w) for unit in units
            }
            port = base_port + index if base_port else 0
            self.gateways.append(
                SimGateway(index, meters, host=host, port=port, bus_delay_s=bus_delay_s)
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


def _check_unit_ids(index: int, units: Sequence[int]) -> None:
    if len(set(units)) != len(units):
        raise ValueError(f"gateway {index}: duplicate unit ids")
    for unit in units:
        if unit not in UNIT_IDS:
            raise ValueError(f"gateway {index}: unit id {unit} outside 1..247")


def describe(sim: Simulator) -> list[str]:
    """One line per gateway: where it listens and which unit ids it has."""
    lines = []
    for gateway in sim.gateways:
        units = sorted(gateway.meters)
        span = f"{units[0]}-{units[-1]}" if units else "none"
        lines.append(
            f"gateway {gateway.index}: {gateway.host}:{gateway.port}, "
            f"{len(units)} meters (unit ids {span})"
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feikong simulate", description="Simulate Modbus TCP gateways with prepaid meters."
    )
    parser.add_argument("--gateways", type=int, default=1, help="number of gateways")
    parser.add_argument("--meters", type=int, default=10, help="meters per gateway (unit ids 1..N)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--base-port", type=int, default=15020, help="gateway i listens on base+i; 0: any port"
    )
    parser.add_argument("--relay-delay", type=float, default=0.0, help="seconds until a relay moves")
    parser.add_argument("--load-w", type=float, default=0.0, help="load of every meter, W")
    parser.add_argument("--bus-delay", type=float, default=0.0, help="seconds per bus transaction")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry: run the simulator until Ctrl-C."""
    args = build_parser().parse_args(argv)
    try:
        sim = Simulator(
            args.gateways,
            args.meters,
            host=args.host,
            base_port=args.base_port,
            relay_delay_s=args.relay_delay,
            load_w=args.load_w,
            bus_delay_s=args.bus_delay,
        )
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve_forever(sim, announce=lambda line: print(line, flush=True)))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
