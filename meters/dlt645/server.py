"""The simulator's DL/T 645-2007 gateway: a transparent serial server with meters behind it.

`Dlt645GatewayServer(gateway)` listens on `gateway.host:gateway.port` (port 0: the OS picks;
`.port` after `await start()`) and answers DL/T 645 frames for the gateway's `SimMeter`s, keyed
by their 12-digit address (the key of `gateway.meters`). The meter model is the protocol-free
`meters.simulator.SimMeter`; this module only renders it into DL/T 645 values and applies the
remote controls to it. One transaction at a time per gateway (`gateway._bus`), each taking
`gateway.bus_delay_s`, like an RS-485 bus.

What a real bus does, and so does this one:
- no answer at all from a silent gateway, a silent or offline meter, an unknown address, a
  broadcast or wildcard address, or a frame that fails its checks: behind a transparent serial
  server nobody can say more than silence in DL/T 645 (there is no "gateway target failed to
  respond" as in Modbus), so an offline meter and a silent one look the same;
- a read (11H) of an identifier in `codec.DATA_ITEMS` is answered 91H, anything else D1H with
  "no data requested" (02H) (`block_reads = False` plays a meter without the energy block);
- a remote control (1CH) with a wrong password or privilege level is answered DCH 04H
  (password wrong/unauthorised); one whose valid-until time has passed, or an action the meter
  does not know, DCH 01H (other error);
- 1AH trip: the meter counts it and opens after its `relay_delay_s` (`SimMeter.accept_command`);
  a welded or faulty contact stays closed (faulty: status word 1's control circuit error bit);
  in keep-power mode the trip is refused with DCH 01H: the meter firmware of Yantai Dongfang
  Wisdom (float12/WorkProjectsSVN, schoolMeter/HPLC/program/app/Module/PrePay/GuoWang698/
  Relay_Remote.c, `TAB_RelayReturnStatusInside`) answers a trip in its keep-power states with
  an error (`R_ERR_OFF_PROTECT`) and does not act; DL/T 645's error byte has no keep-power bit,
  so "other error" it is;
- 1BH close allowed arms the relay (`allow_close=True`), the button closes it; 1CH closes it
  (after the delay); 3AH/3BH set and clear keep power (3AH also cancels a pending trip and arms
  an open relay, as that firmware's state table does); 2AH/2BH set and clear the pre-trip alarm.

The relay command state (status word 3 bit6) is remembered here per address for as long as the
server runs; a restarted gateway starts from the relay's own state.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import TYPE_CHECKING

from meters.dlt645 import codec as c

if TYPE_CHECKING:
    from meters.simulator import SimGateway, SimMeter

PASSWORD_LEVELS = (0x02, 0x04)  # plaintext remote control: levels 02 and 04 (project-defined)


class Dlt645GatewayServer:
    """An asyncio TCP server answering DL/T 645 frames for one simulated gateway."""

    def __init__(self, gateway: SimGateway) -> None:
        self.gateway = gateway
        self.port = gateway.port
        self.block_reads = True  # answer the energy block 00 00 FF 00
        self.transactions = 0  # frames answered or ignored after taking the bus (for tests)
        self._server: asyncio.base_events.Server | None = None
        self._connections: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self._commanded_open: dict[int, bool] = {}
        self._alarm: dict[int, bool] = {}

    async def start(self) -> None:
        """Listen (OSError if it cannot)."""
        self._server = await asyncio.start_server(
            self._serve, self.gateway.host, self.gateway.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def shutdown(self) -> None:
        """Stop listening and drop every client connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        connections = list(self._connections.items())
        self._connections.clear()
        for task, writer in connections:
            writer.transport.abort()
            task.cancel()
        for task, _writer in connections:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if server is not None:
            await server.wait_closed()

    # -- connections ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._server is None:  # shutting down
            writer.transport.abort()
            return
        self._connections[task] = writer
        frames = c.FrameReader()
        try:
            while data := await reader.read(4096):
                frames.feed(data)
                while (frame := frames.next()) is not None:
                    reply = await self._transaction(frame)
                    if reply is not None:
                        writer.write(reply)
                frames.rejected.clear()  # a real meter ignores what does not check out
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # shutdown: end quietly (asyncio's stream callback logs a cancelled handler)
        finally:
            self._connections.pop(task, None)
            writer.transport.abort()

    async def _transaction(self, frame: c.Frame) -> bytes | None:
        gateway = self.gateway
        if gateway.silent or frame.is_reply:
            return None
        bus = gateway._bus
        if bus is None:
            return None
        async with bus:
            if gateway.bus_delay_s > 0:
                await asyncio.sleep(gateway.bus_delay_s)
            self.transactions += 1
            return self._answer(frame)

    # -- one frame -----------------------------------------------------------------------------

    def _answer(self, frame: c.Frame) -> bytes | None:
        if frame.address == c.BROADCAST_ADDRESS:
            return None  # broadcast: never a control here, and nothing we answer
        meter = self.gateway.meters.get(frame.address)
        if meter is None or meter.silent or meter.offline:
            return None
        now = meter.now()
        if frame.control == c.READ:
            return self._read(meter, frame, now)
        if frame.control == c.CONTROL:
            return self._control(meter, frame, now)
        return c.encode_error_reply(frame.address, frame.control, c.ERROR_OTHER)

    def _read(self, meter: SimMeter, frame: c.Frame, now: float) -> bytes:
        address = frame.address
        try:
            di = c.decode_read_request(frame)
        except c.CodecError:
            return c.encode_error_reply(address, c.READ, c.ERROR_OTHER)
        item = c.DATA_ITEMS.get(di)
        if item is None or (item is c.ENERGY_BLOCK and not self.block_reads):
            return c.encode_error_reply(address, c.READ, c.ERROR_NO_DATA)
        return c.encode_read_reply(address, item, self._value(meter, item, now))

    def _value(self, meter: SimMeter, item: c.DataItem, now: float) -> int | tuple[int, ...]:
        snapshot = meter.snapshot(now)  # brings the model to `now`
        if item is c.STATUS_WORD_3:
            return self.status_word_3(meter)
        if item is c.STATUS_WORD_1:
            return c.STATUS1_CONTROL_CIRCUIT_ERROR if meter.relay_fault else 0
        if item is c.VOLTAGE_A:
            return snapshot.voltage_dv
        if item is c.CURRENT_A:
            return snapshot.current_ca * 10  # 0.01 A -> 0.001 A
        if item is c.POWER_TOTAL:
            return snapshot.power_w * 10  # W -> 0.0001 kW
        energy = energy_raw(meter)
        tariffs = (0, 0, energy, 0)  # no time-of-use tariff: all of it is "flat" (as in Modbus)
        if item is c.ENERGY_BLOCK:
            return (energy, *tariffs)
        if item is c.ENERGY_TOTAL:
            return energy
        return tariffs[(item.di >> 8 & 0xFF) - 1]

    def status_word_3(self, meter: SimMeter) -> int:
        """Running status word 3 as the meter reports it now."""
        word = c.STATUS3_RELAY_OPEN if meter.relay_open else 0
        if meter.keep_power:
            word |= c.STATUS3_KEEP_POWER  # and the command bit reads "on"
        elif not (meter.close_allowed and meter.relay_open) and self._commanded(meter):
            word |= c.STATUS3_COMMAND_TRIP
        if self._alarm.get(meter.unit_id):
            word |= c.STATUS3_PRE_TRIP_ALARM
        return word

    def _commanded(self, meter: SimMeter) -> bool:
        commanded = self._commanded_open.get(meter.unit_id)
        if commanded is None:
            pending = meter.relay_pending
            return meter.relay_open if pending is None else pending
        return commanded

    def _control(self, meter: SimMeter, frame: c.Frame, now: float) -> bytes:
        address = frame.address

        def refuse(error_byte: int) -> bytes:
            return c.encode_error_reply(address, c.CONTROL, error_byte)

        try:
            command = c.decode_control_request(frame)
        except c.CodecError:
            return refuse(c.ERROR_OTHER)
        if command.level not in PASSWORD_LEVELS or command.password != meter.password:
            return refuse(c.ERROR_PASSWORD)
        local_now = dt.datetime.fromtimestamp(now, c.METER_TZ).replace(tzinfo=None)
        if command.valid_until < local_now:
            return refuse(c.ERROR_OTHER)  # expired
        loop = asyncio.get_running_loop()
        action = command.action
        if action == c.TRIP:
            if meter.keep_power:
                return refuse(c.ERROR_OTHER)
            meter.accept_command(True, now, loop)
            self._commanded_open[address] = True
        elif action == c.CLOSE_ALLOWED_ACTION:
            meter.accept_command(False, now, loop, allow_close=True)
            self._commanded_open[address] = False
        elif action == c.CLOSE_DIRECT:
            meter.accept_command(False, now, loop)
            self._commanded_open[address] = False
        elif action == c.KEEP_POWER_ON:
            meter.accept_command(False, now, loop, allow_close=True)  # cancels a pending trip
            meter.keep_power = True
            self._commanded_open[address] = False
        elif action == c.KEEP_POWER_OFF:
            meter.advance(now)
            meter.keep_power = False
        elif action in (c.ALARM, c.ALARM_OFF):
            self._alarm[address] = action == c.ALARM
        else:
            return refuse(c.ERROR_OTHER)
        return c.encode_frame(address, c.CONTROL_REPLY, b"")


def energy_raw(meter: SimMeter) -> int:
    """The meter's DL/T 645 energy register: 0.01 kWh, XXXXXX.XX, rolling over at 10**8."""
    return int(meter.energy_wh // 10) % c.ENERGY_WRAP
