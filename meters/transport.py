"""Modbus TCP client for one gateway: the client side's only pymodbus import.

One `GatewayClient` per gateway. Its requests run one at a time (an RS-485 bus does one
transaction at a time), each bounded by a short timeout with no pymodbus retries: retrying is
the caller's decision. Every failure is a `MeterError`; a dropped connection is reopened at the
start of the next call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from meters import codec
from meters import registers as r
from meters.codec import MeterSnapshot

log = logging.getLogger(__name__)

TIMEOUT = "timeout"
EXCEPTION = "exception"
CONNECTION = "connection"

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


class MeterError(Exception):
    """A request to one meter failed.

    kind: "timeout" (no answer in time), "exception" (the gateway or meter answered with a
    Modbus exception, `exception_code` set; or answered words that do not decode,
    `exception_code` None), "connection" (the gateway cannot be reached).
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
    ) -> None:
        self.kind = kind
        self.unit_id = unit_id
        self.host = host
        self.port = port
        self.exception_code = exception_code
        self.operation = operation
        self.detail = detail
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"meter {self.unit_id} @ {self.host}:{self.port}"
        if self.kind == EXCEPTION and self.exception_code is not None:
            name = EXCEPTION_NAMES.get(self.exception_code, "unknown exception")
            what = f"Modbus exception 0x{self.exception_code:02X} ({name})"
        elif self.kind == EXCEPTION:
            what = "invalid response"
        elif self.kind == TIMEOUT:
            what = "no response"
        else:
            what = "no connection to the gateway"
        extra = "; ".join(part for part in (self.operation, self.detail) if part)
        return f"{where}: {what}" + (f" [{extra}]" if extra else "")


class GatewayClient:
    """The connection to one Modbus TCP gateway, shared by all meters behind it."""

    def __init__(self, host: str, port: int, *, timeout: float = 1.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._client: AsyncModbusTcpClient | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost: asyncio.Future[None] | None = None  # done when the connection drops
        self._failing: set[int | None] = set()  # unit ids (None: the gateway) now failing

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
                timeout=self.timeout,
                retries=0,
                reconnect_delay=0,  # no background reconnects: the next call reconnects
                name=f"gateway {self.host}:{self.port}",
                trace_connect=self._on_connection_change,
            )
        if self._client.connected or await self._client.connect():
            return self._client
        return None

    def _on_connection_change(self, connected: bool) -> None:
        if not connected and self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    async def _send(
        self, client: AsyncModbusTcpClient, send: Callable[[AsyncModbusTcpClient], Awaitable[Any]]
    ) -> Any:
        """Send one request; fail at once if the connection drops while it waits.

        (pymodbus itself would wait out the full timeout for an answer that cannot come.)
        """
        request = asyncio.ensure_future(send(client))
        self._lost = lost = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait({request, lost}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            request.cancel()
            raise
        finally:
            self._lost = None
        if request.done():
            return request.result()
        request.cancel()
        await asyncio.wait({request})
        raise ConnectionException("connection lost while waiting for the answer")

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

    async def read_relay(self, unit_id: int) -> bool:
        """Read the relay state register: True if the relay is open (supply cut)."""
        words = await self._read(
            unit_id, r.RELAY_STATE.address, r.RELAY_STATE.words, "read_relay"
        )
        return self._decode(unit_id, "read_relay", codec.decode_relay, words)

    async def write_relay(self, unit_id: int, open_relay: bool) -> None:
        """Send a cut (`open_relay=True`) or restore command (FC16 to RELAY_CONTROL).

        Returns when the meter has acknowledged the command. An acknowledgement is not the
        relay moving: it may move later, or never (keep-power mode, a welded contact). Confirm
        with `read_relay`. Raises MeterError; a timeout leaves it unknown whether the command
        arrived.
        """
        operation = "write_relay cut" if open_relay else "write_relay restore"
        words = codec.encode_relay_command(open_relay)
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
            self._fail(MeterError(EXCEPTION, **self._where(unit_id, operation), detail=str(exc)))

    def _where(self, unit_id: int, operation: str) -> dict[str, Any]:
        return {"unit_id": unit_id, "host": self.host, "port": self.port, "operation": operation}

    async def _request(
        self,
        unit_id: int,
        operation: str,
        send: Callable[[AsyncModbusTcpClient], Awaitable[Any]],
    ) -> Any:
        """Connect if needed, send one request, return the non-error response."""
        where = self._where(unit_id, operation)
        async with self._bind_loop():
            try:
                # pymodbus bounds connect and request by `timeout` each; this guards the rest.
                async with asyncio.timeout(2 * self.timeout + 0.5):
                    client = await self._ensure_connected()
                    if client is None:
                        raise MeterError(CONNECTION, **where, detail="connect failed")
                    self._succeeded(None)
                    response = await self._send(client, send)
            except MeterError as exc:
                self._fail(exc)
            except ConnectionException as exc:
                self._fail(MeterError(CONNECTION, **where, detail=exc.string))
            except ModbusIOException as exc:  # no (matching) answer within the timeout
                detail = f"timeout {self.timeout:g} s: {exc.string}"
                self._fail(MeterError(TIMEOUT, **where, detail=detail))
            except TimeoutError:
                self._fail(MeterError(TIMEOUT, **where, detail="overall deadline passed"))
            except ModbusException as exc:
                self._fail(MeterError(EXCEPTION, **where, detail=exc.string))
            except OSError as exc:
                self._fail(MeterError(CONNECTION, **where, detail=str(exc)))
        if response.isError():
            code = getattr(response, "exception_code", None)
            self._fail(MeterError(EXCEPTION, **where, exception_code=code))
        self._succeeded(unit_id)
        return response

    # -- logging: first failure at ERROR, repeats at DEBUG ----------------------------------

    def _fail(self, error: MeterError) -> NoReturn:
        """Log (ERROR the first time for this meter, or this gateway if unreachable) and raise."""
        key = None if error.kind == CONNECTION else error.unit_id
        if key in self._failing:
            log.debug("%s", error)
        else:
            self._failing.add(key)
            log.error("%s", error)
        raise error

    def _succeeded(self, key: int | None) -> None:
        if key in self._failing:
            self._failing.discard(key)
            if key is None:
                log.info("gateway %s:%s reachable again", self.host, self.port)
            else:
                log.info("meter %s @ %s:%s answering again", key, self.host, self.port)
