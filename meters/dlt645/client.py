"""DL/T 645-2007 client for one gateway: frames over a plain TCP stream to a transparent serial
server (RS-485 to Ethernet), which passes them to the meters' bus and their answers back.

One `Dlt645Client` per gateway, shaped as `meters.protocol.MeterBus`. Its transactions run one
at a time (an RS-485 bus does one at a time), each bounded by `timeout`, with no retries:
retrying is the caller's decision. Every failure is a `MeterError`; a dropped connection fails
the transaction at once and is reopened at the start of the next call. Each failed transaction
logs one WARNING line (gateway, meter, what failed).

DL/T 645 has no transaction id, so the answer is recognised by what it says: the meter's
address, the reply's control code and, for a read, the data identifier. Bytes left from an
earlier, timed-out request are dropped before a request is sent; a frame that arrives later from
another meter, to another identifier, or that fails its checksum is skipped (and reading resyncs
on the next 68H), never taken as this request's answer. (A late acknowledgement, 9CH, of an
earlier command to the same meter cannot be told from this one's: a command is confirmed by
reading the relay back, never by its acknowledgement alone.)

What a poll costs: each read is one transaction of one identifier (DL/T 645-2007 reads one DI
per frame), and a transaction costs the bytes both ways plus the meter's turnaround (the
standard allows 20-500 ms). At 2400 bit/s, 8E1 (11 bits, 4.6 ms a byte): a read request is 20
bytes with its preamble (92 ms); the energy block's reply 40 bytes (183 ms), one energy value's
24 bytes (110 ms). The block is 275 ms plus one turnaround; the total and four tariffs read
apart, 5 x 202 ms plus five. Measured on loopback with the simulator's bus delay at 20 ms per
transaction: block 20.7 ms, five single reads 106.9 ms (p50). `read_snapshot` therefore reads 2
identifiers: the energy block and status word 3 (the relay), all the worker judges a reading
by (43 ms there); status word 1 only when word 3 shows a relay commanded off that is still on
(a possible relay fault); the active power, voltage and current only with `read_electrical`
(the worker uses none of them: a third frame for the power made a poll half as long again, on
the wire and in CPU).
A meter that answers the block with "no data requested" is read for its total alone from then
on (its tariffs then read 0).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from meters.dlt645 import codec as c
from meters.protocol import (CONNECTION, DLT645_TCP, EXCEPTION, TIMEOUT, FailureLog, MeterError,
                             MeterSnapshot, RelayState, check_address)

log = logging.getLogger(__name__)

METER_TZ = c.METER_TZ


class _Stream(asyncio.Protocol):
    """The TCP connection: bytes into a FrameReader, a wake-up for the waiting transaction."""

    def __init__(self) -> None:
        self.frames = c.FrameReader()
        self.transport: asyncio.Transport | None = None
        self.lost: str | None = None
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.frames.feed(data)
        self.arrived.set()

    def eof_received(self) -> bool:
        self.lost = "the gateway closed the connection"
        self.arrived.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self.lost = f"connection lost: {exc}" if exc else "connection closed"
        self.arrived.set()


class Dlt645Client:
    """The connection to one DL/T 645 gateway, shared by all meters behind it.

    Remote control credentials: `level` (the password's privilege level, PA), `password` (six
    digits as a number) and `operator` (the 4-byte operator code the meter records), by default
    the class attributes below: level 02, password 000000, operator 00000000 (project-defined:
    no public source gives the default of estates' sub-meters; a public meter-test tool,
    zaxai/MeterCommServer, starts from level 02 and 123456; installers set their own, so these
    are meant to come from settings). `authorize` is the seam for meters that
    take remote control only through their ESAM (State Grid meters): it gets (address, plaintext
    1CH data) and returns the data to send. A command is valid for `command_validity_s`
    seconds of the meter's clock (Beijing time); a meter refuses it after.
    """

    protocol = DLT645_TCP
    LEVEL = 0x02
    PASSWORD = 0  # 000000
    OPERATOR = 0  # 00000000
    COMMAND_VALIDITY_S = 600.0

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 1.0,
        level: int | None = None,
        password: int | None = None,
        operator: int | None = None,
        authorize: Callable[[int, bytes], bytes] | None = None,
        command_validity_s: float | None = None,
        read_electrical: bool = False,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.level = self.LEVEL if level is None else level
        self.password = self.PASSWORD if password is None else password
        self.operator = self.OPERATOR if operator is None else operator
        self.authorize = authorize
        self.command_validity_s = (self.COMMAND_VALIDITY_S if command_validity_s is None
                                   else command_validity_s)
        self.read_electrical = read_electrical
        self._clock = clock or (lambda: dt.datetime.now(METER_TZ).replace(tzinfo=None))
        self._stream: _Stream | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._no_block: set[int] = set()  # meters that answer the energy block "no data"
        self._trail = FailureLog(log, host, port, lambda a: f"{a:012d}")  # one line a failure
        self.frames_sent = 0

    # -- connection ----------------------------------------------------------------------------

    def _bind_loop(self) -> asyncio.Lock:
        """Streams and locks belong to one event loop; rebuild them on a new one."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lock is None:
            self._drop_stream()
            self._lock = asyncio.Lock()
            self._loop = loop
        return self._lock

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and stream.transport is not None:
            if self._loop is None or not self._loop.is_closed():
                stream.transport.abort()

    async def _connected(self, address: int, operation: str) -> _Stream:
        stream = self._stream
        if stream is not None and stream.lost is None:
            return stream
        self._drop_stream()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                _transport, stream = await loop.create_connection(_Stream, self.host, self.port)
        except TimeoutError:
            raise MeterError(CONNECTION, **self._where(address, operation),
                             detail=f"connect: no answer in {self.timeout:g} s") from None
        except OSError as exc:
            raise MeterError(CONNECTION, **self._where(address, operation),
                             detail=f"connect failed: {exc.strerror or exc}") from None
        self._stream = stream
        if None in self._trail.failing:
            self._trail.succeeded(None)
        return stream

    async def connect(self) -> bool:
        """Open the connection if it is not open. False if the gateway cannot be reached."""
        async with self._bind_loop():
            try:
                await self._connected(0, "connect")
            except MeterError:
                return False
            return True

    async def close(self) -> None:
        """Close the connection; a later call opens it again."""
        self._drop_stream()

    # -- the MeterBus interface ----------------------------------------------------------------

    async def read_snapshot(self, unit_id: int) -> MeterSnapshot:
        """Energy (block) and status word 3 (and status word 1 if it can tell a relay fault;
        active power, voltage and current with `read_electrical`, else they read 0), decoded."""
        operation = "read_snapshot"
        items = [c.ENERGY_TOTAL if unit_id in self._no_block else c.ENERGY_BLOCK,
                 c.STATUS_WORD_3]
        if self.read_electrical:
            items += [c.POWER_TOTAL, c.VOLTAGE_A, c.CURRENT_A]
        values = await self._read_items(unit_id, operation, items)
        return self._decode(unit_id, operation, c.decode_snapshot, values)

    async def read_relay(self, unit_id: int) -> RelayState:
        """Status word 3 (and word 1 when the relay may be faulty): open (supply cut) and why."""
        operation = "read_relay"
        values = await self._read_items(unit_id, operation, [c.STATUS_WORD_3])
        return self._decode(unit_id, operation, c.decode_relay, values)

    async def write_relay(self, unit_id: int, open_relay: bool, *,
                          close_allowed: bool = False) -> None:
        """Send a trip (1AH, `open_relay`), a direct close (1CH) or, with `close_allowed`, a
        close-allowed (1BH: armed, the resident presses the meter's button).

        Returns when the meter has acknowledged (9CH). An acknowledgement is not the relay
        moving: confirm with `read_relay`. A meter in keep-power mode refuses a trip (DCH):
        MeterError kind "exception" with the error byte. A timeout leaves it unknown whether
        the command arrived."""
        action = (c.TRIP if open_relay else
                  c.CLOSE_ALLOWED_ACTION if close_allowed else c.CLOSE_DIRECT)
        operation = f"write_relay {c.ACTIONS[action]}"
        self._check(unit_id, operation)
        valid_until = self._clock() + dt.timedelta(seconds=self.command_validity_s)
        try:
            request = c.encode_control(unit_id, action, self.password, self.operator,
                                       valid_until, level=self.level, authorize=self.authorize)
        except c.CodecError as exc:
            self._trail.fail(MeterError(EXCEPTION, **self._where(unit_id, operation),
                                        detail=str(exc)))
        await self._transact(unit_id, operation, request, c.CONTROL)

    # -- transactions --------------------------------------------------------------------------

    async def _read_items(self, address: int, operation: str,
                          items: list[c.DataItem]) -> dict[int, bytes]:
        self._check(address, operation)
        values: dict[int, bytes] = {}
        for item in items:
            await self._read_one(address, operation, item, values)
        if c.STATUS_WORD_3.di in values:
            word3 = self._decode(address, operation, lambda v: c.decode_value(
                c.STATUS_WORD_3, v[c.STATUS_WORD_3.di]), values)
            if c.needs_status_word_1(word3):
                await self._read_one(address, operation, c.STATUS_WORD_1, values)
        return values

    async def _read_one(self, address: int, operation: str, item: c.DataItem,
                        values: dict[int, bytes]) -> None:
        try:
            values[item.di] = await self._transact(
                address, f"{operation} {item.di:08X}", c.encode_read(address, item), c.READ,
                di=item.di)
        except MeterError as exc:
            if (item is c.ENERGY_BLOCK and exc.exception_code == c.ERROR_NO_DATA
                    and address not in self._no_block):
                self._no_block.add(address)  # this meter has no block: its total, from now on
                values[c.ENERGY_TOTAL.di] = await self._transact(
                    address, f"{operation} {c.ENERGY_TOTAL.di:08X}",
                    c.encode_read(address, c.ENERGY_TOTAL), c.READ, di=c.ENERGY_TOTAL.di)
                return
            raise

    async def _transact(self, address: int, operation: str, request: bytes, function: int, *,
                        di: int | None = None) -> bytes:
        """Send one request and wait for its answer, under the gateway's lock: one transaction
        at a time, and a restore waits for at most one transaction of a poll, not the whole poll.
        Returns the answer's data (for a read: the value bytes after the identifier)."""
        async with self._bind_loop():
            frame, answer = await self._exchange(address, operation, request, function, di)
        if frame.is_abnormal:
            code = answer
            self._trail.fail(MeterError(EXCEPTION, **self._where(address, operation),
                                        exception_code=code, what=c.describe_error(code)))
        if self._trail.failing and address in self._trail.failing:
            self._trail.succeeded(address)
        return answer  # type: ignore[return-value]

    async def _exchange(self, address: int, operation: str, request: bytes, function: int,
                        di: int | None) -> tuple[c.Frame, Any]:
        rejected: list[str] = []
        try:
            stream = await self._connected(address, operation)
            stream.frames.clear()  # whatever came before this request is stale
            assert stream.transport is not None
            stream.transport.write(request)
            self.frames_sent += 1
            async with asyncio.timeout(self.timeout):
                while True:
                    frame = stream.frames.next()
                    rejected += stream.frames.rejected
                    stream.frames.rejected.clear()
                    if frame is None:
                        if stream.lost is not None:
                            self._drop_stream()
                            raise MeterError(CONNECTION, **self._where(address, operation),
                                             detail=stream.lost)
                        stream.arrived.clear()
                        await stream.arrived.wait()
                        continue
                    answer = self._match(frame, address, function, di)
                    if isinstance(answer, str):
                        rejected.append(answer)
                        continue
                    break
        except MeterError as exc:
            self._trail.fail(exc)
        except TimeoutError:
            if rejected:
                self._trail.fail(MeterError(EXCEPTION, **self._where(address, operation),
                                            detail="no valid answer: " + "; ".join(
                                                list(dict.fromkeys(rejected))[:3])))
            self._trail.fail(MeterError(TIMEOUT, **self._where(address, operation),
                                        detail=f"timeout {self.timeout:g} s"))
        return frame, answer

    @staticmethod
    def _match(frame: c.Frame, address: int, function: int, di: int | None) -> Any:
        """This request's answer's data (bytes), its error byte (int) if abnormal, or why the
        frame is not the answer (str)."""
        if not frame.is_reply:
            return f"a request frame (control {frame.control:02X}H), not a reply"  # an echo
        if frame.address != address:
            return f"a frame from address {frame.address:012d}"
        if frame.function != function:
            return f"a reply with control code {frame.control:02X}H"
        try:
            if frame.is_abnormal:
                return c.decode_error_byte(frame)
            if frame.control & c.MORE_BIT:
                return "a reply announcing more frames (B1H): not used for these identifiers"
            if di is None:
                if frame.data:
                    return f"a control reply with {len(frame.data)} data bytes"
                return b""
            got, value = c.decode_read_reply(frame)
        except c.CodecError as exc:
            return str(exc)
        if got != di:
            return f"a reply for identifier {got:08X}"
        return value

    # -- helpers -------------------------------------------------------------------------------

    def _check(self, address: int, operation: str) -> None:
        problem = check_address(DLT645_TCP, address)
        if problem is not None:
            self._trail.fail(MeterError(EXCEPTION, **self._where(address, operation),
                                        detail=problem))

    def _decode(self, address: int, operation: str, decode: Callable[[Any], Any], values: Any):
        """Decode answered values; values that make no sense are an invalid response."""
        try:
            return decode(values)
        except ValueError as exc:
            self._trail.fail(MeterError(EXCEPTION, **self._where(address, operation),
                                        detail=str(exc)))

    def _where(self, address: int, operation: str) -> dict[str, Any]:
        return {"unit_id": address, "host": self.host, "port": self.port,
                "operation": operation}

