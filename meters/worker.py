"""The worker: one asyncio task and one Modbus client per gateway.

Each gateway loop runs due commands first (restores before cuts), then a poll round of its
meters, checking for newly woken commands between two meters, so a restore waits for at most
one bus transaction. A command is written, then the relay is read back until it matches or
the attempt's deadline passes; every attempt is recorded. No SQL and no register numbers here:
the database side is `meters.store`, the protocol side `meters.transport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from sqlalchemy.engine import Engine

from app import wakeup
from app.db import utcnow
from app.settings import Settings
from meters import store
from meters.store import CONFIRMED, AttemptResult, DueCommand, GatewaySpec
from meters.transport import GatewayClient, MeterError

log = logging.getLogger(__name__)

ClientFactory = Callable[[GatewaySpec], GatewayClient]


class GatewayLoop:
    def __init__(self, spec: GatewaySpec, client: GatewayClient, engine: Engine, settings: Settings):
        self.spec = spec
        # Database calls run in threads of this gateway's own: reads never queue behind another
        # gateway's writes, nor behind this gateway's attempt being stored.
        self.read_thread = ThreadPoolExecutor(1, thread_name_prefix=f"gw{spec.gateway_id}-read")
        self.write_thread = ThreadPoolExecutor(1, thread_name_prefix=f"gw{spec.gateway_id}-write")
        self.client = client
        self.engine = engine
        self.settings = settings
        self.wake = asyncio.Event()
        self.recording: dict[int, asyncio.Task] = {}  # command id → its attempt being stored
        self.recorded_at: dict[int, float] = {}  # command id → when its last attempt was stored

    async def db(self, fn, *args):
        """Run a store function that writes, in order, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(
            self.write_thread, fn, self.engine, *args)

    async def db_read(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(
            self.read_thread, fn, self.engine, *args)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        while True:
            self.wake.clear()
            await self.run_due_commands()
            if loop.time() >= next_poll:
                await self.poll_round()
                next_poll = loop.time() + self.settings.poll_interval_s
            timeout = max(0.0, min(next_poll - loop.time(), self.settings.sweep_interval_s))
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                pass

    async def run_due_commands(self) -> None:
        loop = asyncio.get_running_loop()
        read_started = loop.time()
        due = await self.db_read(store.due_commands, self.spec.gateway_id)
        # A read that began before an attempt was stored may still show that command as due.
        self.recorded_at = {cid: t for cid, t in self.recorded_at.items() if t >= read_started}
        for command in due:
            if command.command_id in self.recording or command.command_id in self.recorded_at:
                continue
            await self.execute(command)

    async def execute(self, command: DueCommand) -> asyncio.Task:
        """Write the relay command, then read the relay until it is in the wanted state or the
        confirmation deadline passes. The attempt is stored by a task of its own, so the bus
        goes on to the next command while the database records this one; until then the
        command is not run again. Returns that task (its result: the command's new state)."""
        loop = asyncio.get_running_loop()
        started = utcnow()
        relay_open = None
        try:
            await self.client.write_relay(command.unit_id, command.wants_open)
            deadline = loop.time() + self.settings.confirm_timeout_s
            while True:
                relay_open = await self.client.read_relay(command.unit_id)
                if relay_open == command.wants_open:
                    result = AttemptResult(started, utcnow(), CONFIRMED, relay_open)
                    break
                if loop.time() >= deadline:
                    result = AttemptResult(started, utcnow(), "mismatch", relay_open,
                                           detail="relay did not move before the deadline")
                    break
                await asyncio.sleep(0.05)
        except MeterError as exc:
            result = AttemptResult(started, utcnow(), exc.kind, relay_open,
                                   exception_code=exc.exception_code, detail=str(exc))
        task = asyncio.create_task(self._record(command, result))
        self.recording[command.command_id] = task
        return task

    async def _record(self, command: DueCommand, result: AttemptResult) -> str:
        try:
            state = await self.db(store.record_attempt, command.command_id, result)
        finally:
            del self.recording[command.command_id]
            self.recorded_at[command.command_id] = asyncio.get_running_loop().time()
        log.info("%s meter %s unit %s: %s -> %s", command.action, command.meter_id,
                 command.unit_id, result.outcome, state)
        if state != "pending":
            self.wake.set()  # the next due command may be waiting for this one's outcome
        return state

    async def poll_round(self) -> None:
        for meter in self.spec.meters:
            if self.wake.is_set():  # a command was queued: it goes out before the next read
                self.wake.clear()
                await self.run_due_commands()
            try:
                snapshot = await self.client.read_snapshot(meter.unit_id)
            except MeterError:
                await self.db(store.record_poll_failure, meter.meter_id)
                continue
            await self.db(store.record_reading, meter.meter_id, snapshot.energy_wh,
                          snapshot.relay_open, utcnow())


class Worker:
    """All gateway loops of this process, woken by `app.wakeup` and, on PostgreSQL, by NOTIFY."""

    def __init__(self, engine: Engine, settings: Settings,
                 client_factory: ClientFactory | None = None):
        self.engine = engine
        self.settings = settings
        self.client_factory = client_factory or (
            lambda spec: GatewayClient(spec.host, spec.port, timeout=settings.modbus_timeout_s))
        self.loops: dict[int, GatewayLoop] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self, gateway_id: int) -> None:
        """Thread-safe: called after a commit, from whatever thread committed."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_in_loop, gateway_id)

    def _wake_in_loop(self, gateway_id: int) -> None:
        gateway_loop = self.loops.get(gateway_id)
        if gateway_loop is not None:
            gateway_loop.wake.set()
        else:  # a gateway added since we last looked
            self._reload.set()

    async def sync_gateways(self) -> None:
        """Start a loop for each new gateway, give running loops their current meter lists,
        and stop the loops of gateways that are gone."""
        specs = {s.gateway_id: s for s in await asyncio.to_thread(store.load_gateways, self.engine)}
        for gateway_id, spec in specs.items():
            current = self.loops.get(gateway_id)
            if current is None:
                gateway_loop = GatewayLoop(spec, self.client_factory(spec), self.engine, self.settings)
                self.loops[gateway_id] = gateway_loop
                self._tasks[gateway_id] = asyncio.create_task(gateway_loop.run(),
                                                              name=f"gateway-{gateway_id}")
            elif (current.spec.host, current.spec.port) != (spec.host, spec.port):
                await self._stop_gateway(gateway_id)
                await self.sync_gateways()
                return
            else:
                current.spec = spec
        for gateway_id in set(self.loops) - set(specs):
            await self._stop_gateway(gateway_id)

    async def _stop_gateway(self, gateway_id: int) -> None:
        task = self._tasks.pop(gateway_id)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        gateway_loop = self.loops.pop(gateway_id)
        await gateway_loop.client.close()
        gateway_loop.read_thread.shutdown(wait=False)
        gateway_loop.write_thread.shutdown(wait=False)

    async def run(self) -> None:
        """Run every gateway's loop until cancelled; look for new or changed gateways every
        `gateway_reload_s` seconds, or at once when woken for a gateway it does not know."""
        self._loop = asyncio.get_running_loop()
        self._reload = asyncio.Event()
        self._tasks: dict[int, asyncio.Task] = {}
        wakeup.subscribe(self.wake)
        listener = None
        if self.engine.dialect.name == "postgresql":
            listener = asyncio.create_task(self._listen(), name="pg-listen")
        try:
            await self.sync_gateways()
            log.info("worker: %d gateways, %d meters", len(self.loops),
                     sum(len(gl.spec.meters) for gl in self.loops.values()))
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._reload.wait(), self.settings.gateway_reload_s)
                self._reload.clear()
                await self.sync_gateways()
                for gateway_id, task in list(self._tasks.items()):
                    if task.done() and not task.cancelled():  # a loop must never die quietly
                        log.error("gateway %s loop stopped: %r; restarting", gateway_id,
                                  task.exception())
                        await self._stop_gateway(gateway_id)
                        self._reload.set()
        finally:
            wakeup.unsubscribe(self.wake)
            if listener is not None:
                listener.cancel()
            for gateway_id in list(self.loops):
                await self._stop_gateway(gateway_id)

    async def _listen(self) -> None:
        """Hear commands queued by other processes (PostgreSQL LISTEN/NOTIFY)."""
        import psycopg

        url = self.engine.url.render_as_string(hide_password=False).replace(
            "postgresql+psycopg://", "postgresql://")
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {wakeup.CHANNEL}")
                    async for note in conn.notifies():
                        self._wake_in_loop(int(note.payload))
            except (OSError, psycopg.Error) as exc:
                log.warning("LISTEN connection lost (%s); the sweep covers until it is back", exc)
                await asyncio.sleep(1.0)
