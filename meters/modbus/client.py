"""Modbus client for one gateway, over TCP: MBAP frames (`modbus_tcp`) or RTU frames with their
CRC tunnelled through a transparent serial server (`modbus_rtu_over_tcp`, pymodbus' RTU framer
on a TCP socket). The client side's only pymodbus import.

One `GatewayClient` per gateway. Its requests run one at a time (an RS-485 bus does one
transaction at a time), each bounded by a short timeout with no pymodbus retries: retrying is
the caller's decision. Every failure is a `MeterError`; a dropped connection is reopened at the
start of the next call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

from meters.modbus import codec
from meters.modbus import registers as r
from meters.protocol import (CONNECTION, EXCEPTION, MODBUS_RTU_OVER_TCP, MODBUS_TCP, TIMEOUT,
                             FailureLog, MeterError, MeterSnapshot, RelayState)

log = logging.getLogger(__name__)


class _PymodbusToDebug(logging.Filter):
    """pymodbus logs a frame dump at ERROR on every timeout (90 % of a flaky bus's log): its
    records are kept at DEBUG, shown only where the `pymodbus` logger is set to DEBUG; our own
    WARNING line says what failed (`meters.protocol.FailureLog`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


for _name in ("pymodbus", "pymodbus.logging"):  # the latter: pymodbus' `Log` class
    logging.getLogger(_name).addFilter(_PymodbusToDebug())


class _ReadRegistersResponse(ReadHoldingRegistersResponse):
    """pymodbus's FC03 response with a decode of one C call instead of one `struct.unpack` per
    register (a 51-register poll answer: about 12 µs less per read). Registered per client with
    `client.register`, pymodbus's way to choose the class a response is decoded with; what it
    decodes, and the errors it raises, are pymodbus's own."""

    def decode(self, data: bytes) -> None:
        if (data_len := int(data[0])) >= len(data):
            raise ModbusIOException(
                f"byte_count {data_len} > length of packet {len(data)}",
                function_code=self.function_code,
            )
        if data_len % 2:  # pymodbus fails on the half register with struct.error too
            raise struct.error(f"odd byte count {data_len}")
        self.registers = list(_register_struct(data_len // 2).unpack_from(data, 1))

    def __str__(self) -> str:
        # pymodbus formats every decoded response for a debug line, logged or not: without
        # the 51 register values that is a few µs less per read.
        return (f"ReadHoldingRegistersResponse(dev_id={self.dev_id}, "
                f"transaction_id={self.transaction_id}, count={len(self.registers)})")


@functools.cache
def _register_struct(count: int) -> struct.Struct:
    return struct.Struct(f">{count}H")

EXCEPTION_NAMES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x07: "negative acknowledge",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target failed to respond",
}


def _modbus_what(kind: str, code: int | None) -> str:
    if kind == EXCEPTION and code is not None:
        return f"Modbus exception 0x{code:02X} ({EXCEPTION_NAMES.get(code, 'unknown exception')})"
    return ""


class GatewayClient:
    """The connection to one Modbus gateway, shared by all meters behind it. `rtu`: RTU frames
    over the TCP socket (a transparent serial server) instead of MBAP."""

    def __init__(self, host: str, port: int, *, timeout: float = 1.0, rtu: bool = False) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.rtu = rtu
        self.protocol = MODBUS_RTU_OVER_TCP if rtu else MODBUS_TCP
        self._client: AsyncModbusTcpClient | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Task | None = None  # the task waiting for an answer, if any
        self._dropped = False  # the connection dropped while `_waiter` waited
        self._sent = 0  # requests sent (tells a late drop callback which request it meant)
        self._trail = FailureLog(log, host, port)  # one WARNING line a failed transaction

    # -- connection ---------------------------------------------------------------------

    def _bind_loop(self) -> asyncio.Lock:
        """pymodbus clients and asyncio locks belong to one event loop; rebuild on a new one."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lock is None:
            if self._client is not None and self._loop is not None and not self._loop.is_closed():
                self._client.close()
            self._client = None
            self._lock = asyncio.Lock()
            self._loop = loop
        return self._lock

    async def _ensure_connected(self) -> AsyncModbusTcpClient | None:
        """The connected pymodbus client, or None if the gateway cannot be reached."""
        if self._client is None:
            self._client = AsyncModbusTcpClient(
                self.host,
                port=self.port,
                framer=FramerType.RTU if self.rtu else FramerType.SOCKET,
                timeout=self.timeout,
                retries=0,
                reconnect_delay=0,  # no background reconnects: the next call reconnects
                name=f"gateway {self.host}:{self.port}",
                trace_connect=self._on_connection_change,
            )
            self._client.register(_ReadRegistersResponse)
        if self._client.connected or await self._client.connect():
            return self._client
        return None

    def _on_connection_change(self, connected: bool) -> None:
        if not connected and self._waiter is not None and not self._dropped:
            # A request is waiting for its answer on this connection: it cannot come. Wake the
            # waiting task now (pymodbus itself would wait out the full timeout); `_send`
            # turns this cancellation into a connection error. When the drop happens inside
            # the request's own step (pymodbus closing after too many timeouts, a failed
            # write), cancel only once that step has yielded, if it is still waiting then.
            if asyncio.current_task() is self._waiter:
                asyncio.get_running_loop().call_soon(self._drop_waiter, self._sent)
            else:
                self._drop_waiter(self._sent)

    def _drop_waiter(self, sent: int) -> None:
        if self._waiter is not None and self._sent == sent and not self._dropped:
            self._dropped = True
            self._waiter.cancel()

    async def _send(
        self, client: AsyncModbusTcpClient, send: Callable[[AsyncModbusTcpClient], Awaitable[Any]]
    ) -> Any:
        """Send one request; fail at once if the connection drops while it waits.

        Nothing is allocated per request for that: the connection callback cancels the one
        waiting task (requests on a gateway run one at a time, under our lock), and only that
        cancellation becomes a ConnectionException; any other cancellation goes through.
        """
        task = asyncio.current_task()
        self._sent += 1
        self._waiter, self._dropped = task, False
        try:
            return await send(client)
        except asyncio.CancelledError:
            if self._dropped:
                self._dropped = False
                if task.uncancel() == 0:  # ours alone
                    raise ConnectionException(
                        "connection lost while waiting for the answer") from None
            raise
        finally:
            self._waiter = None
            if self._dropped:  # the answer was in before our cancel: it was absorbed, undo it
                self._dropped = False
                task.uncancel()

    async def connect(self) -> bool:
        """Open the connection if it is not open. False if the gateway cannot be reached."""
        async with self._bind_loop():
            return await self._ensure_connected() is not None

    async def close(self) -> None:
        """Close the connection; a later call opens it again."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- requests -----------------------------------------------------------------------

    async def read_snapshot(self, unit_id: int) -> MeterSnapshot:
        """Read the whole poll block (one FC03 request) and decode it."""
        words = await self._read(unit_id, r.BLOCK_START, r.BLOCK_COUNT, "read_snapshot")
        return self._decode(unit_id, "read_snapshot", codec.decode_block, words)

    async def read_relay(self, unit_id: int) -> RelayState:
        """Read the relay state and status registers (one FC03): open (supply cut) and why."""
        words = await self._read(
            unit_id, r.RELAY_STATE.address, r.RELAY_READ_COUNT, "read_relay"
        )
        return self._decode(unit_id, "read_relay", codec.decode_relay, words)

    async def write_relay(self, unit_id: int, open_relay: bool, *,
                          close_allowed: bool = False) -> None:
        """Send a cut (`open_relay=True`) or restore command (FC16 to RELAY_CONTROL); a restore
        with `close_allowed` arms the relay for the meter's button (允许合闸).

        Returns when the meter has acknowledged the command. An acknowledgement is not the
        relay moving: it may move later, or never (keep-power mode, a welded contact). Confirm
        with `read_relay`. Raises MeterError; a timeout leaves it unknown whether the command
        arrived.
        """
        operation = ("write_relay cut" if open_relay else
                     "write_relay allow-close" if close_allowed else "write_relay restore")
        words = codec.encode_relay_command(open_relay, close_allowed=close_allowed)
        await self._request(
            unit_id,
            operation,
            lambda client: client.write_registers(
                r.RELAY_CONTROL.address, words, device_id=unit_id
            ),
        )

    async def _read(self, unit_id: int, address: int, count: int, operation: str) -> list[int]:
        response = await self._request(
            unit_id,
            operation,
            lambda client: client.read_holding_registers(
                address, count=count, device_id=unit_id
            ),
        )
        return list(response.registers)

    def _decode(self, unit_id: int, operation: str, decode: Callable[[list[int]], Any], words):
        """Decode answered words; words that make no sense are an invalid response."""
        try:
            return decode(words)
        except ValueError as exc:
            self._trail.fail(MeterError(EXCEPTION, **self._where(unit_id, operation),
                                        detail=str(exc)))

    def _where(self, unit_id: int, operation: str) -> dict[str, Any]:
        return {"unit_id": unit_id, "host": self.host, "port": self.port, "operation": operation}

    async def _request(
        self,
        unit_id: int,
        operation: str,
        send: Callable[[AsyncModbusTcpClient], Awaitable[Any]],
    ) -> Any:
        """Connect if needed, send one request, return the non-error response.

        pymodbus bounds the request by `timeout` (no retries); connecting is bounded here."""
        async with self._bind_loop():
            try:
                client = self._client
                if client is None or not client.connected:
                    async with asyncio.timeout(self.timeout + 0.5):
                        client = await self._ensure_connected()
                    if client is None:
                        raise MeterError(CONNECTION, **self._where(unit_id, operation),
                                         detail="connect failed")
                if None in self._trail.failing:
                    self._trail.succeeded(None)
                response = await self._send(client, send)
            except MeterError as exc:
                self._trail.fail(exc)
            except ConnectionException as exc:
                self._trail.fail(MeterError(CONNECTION, **self._where(unit_id, operation),
                                            detail=exc.string))
            except ModbusIOException as exc:  # no (matching) answer within the timeout
                detail = f"timeout {self.timeout:g} s: {exc.string}"
                self._trail.fail(MeterError(TIMEOUT, **self._where(unit_id, operation),
                                            detail=detail))
            except TimeoutError:
                self._trail.fail(MeterError(TIMEOUT, **self._where(unit_id, operation),
                                            detail="connect deadline passed"))
            except ModbusException as exc:
                self._trail.fail(MeterError(EXCEPTION, **self._where(unit_id, operation),
                                            detail=exc.string))
            except OSError as exc:
                self._trail.fail(MeterError(CONNECTION, **self._where(unit_id, operation),
                                            detail=str(exc)))
        if response.isError():
            code = getattr(response, "exception_code", None)
            self._trail.fail(MeterError(EXCEPTION, **self._where(unit_id, operation),
                                        exception_code=code, what=_modbus_what(EXCEPTION, code)))
        if self._trail.failing and unit_id in self._trail.failing:
            self._trail.succeeded(unit_id)
        return response
