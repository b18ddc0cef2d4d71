"""The worker: one asyncio task and one Modbus client per gateway (see `meters.gateway_loop`),
the gateways it is responsible for, and how it hears of new commands. No SQL and no register
numbers here: the database side is `meters.store`, the protocol side `meters.protocol`
(the gateway row's `protocol` picks the client: `meters.bus.open_bus`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.engine import Engine

from app import wakeup
from app.settings import Settings
from meters import store
from meters.gateway_loop import GatewayLoop
from meters.leases import new_worker_id, release_leases, renew_leases
from meters.store import GatewaySpec
from meters.bus import open_bus
from meters.protocol import MeterBus

log = logging.getLogger(__name__)

STOP_WITHIN_S = 1.0  # each step of stopping a gateway's loop waits at most this long



class Worker:
    """All gateway loops of this process, woken by `app.wakeup` and, on PostgreSQL, by NOTIFY."""

    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings
        self.loops: dict[int, GatewayLoop] = {}
        self.worker_id = new_worker_id()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open_bus(self, spec: GatewaySpec) -> MeterBus:
        """The gateway row's protocol picks its client; nothing else does."""
        return open_bus(spec.protocol, spec.host, spec.port, timeout=self.settings.modbus_timeout_s)

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
        """Renew this worker's gateway leases; start a loop for each gateway newly held, give
        running loops their current meter lists, and stop the loops of gateways no longer held
        (released, taken over, or deleted)."""
        held = await asyncio.to_thread(renew_leases, self.engine, self.worker_id,
                                       self.settings.lease_ttl_s)
        specs = {s.gateway_id: s
                 for s in await asyncio.to_thread(store.load_gateways, self.engine, held)}
        for gateway_id, spec in specs.items():
            current = self.loops.get(gateway_id)
            if current is None:
                gateway_loop = GatewayLoop(spec, self._open_bus(spec), self.engine, self.settings)
                self.loops[gateway_id] = gateway_loop
                self._tasks[gateway_id] = asyncio.create_task(gateway_loop.run(),
                                                              name=f"gateway-{gateway_id}")
            elif ((current.spec.host, current.spec.port, current.spec.protocol)
                  != (spec.host, spec.port, spec.protocol)):
                await self._stop_gateway(gateway_id)
                await self.sync_gateways()
                return
            else:
                current.spec = spec
        for gateway_id in set(self.loops) - set(specs):
            await self._stop_gateway(gateway_id)

    async def _stop_gateway(self, gateway_id: int) -> None:
        """Stop one gateway's loop, whatever its bus is doing, within about STOP_WITHIN_S: its
        task is cancelled (a request waiting on a slow or silent bus with it), its connection
        closed, and what it read is stored if the database takes it in time (a write still
        running then finishes on its own thread; an attempt not stored is tried again, and a
        relay already in place completes it without a write)."""
        task = self._tasks.pop(gateway_id)
        gateway_loop = self.loops.pop(gateway_id)
        task.cancel()
        _done, running = await asyncio.wait({task}, timeout=STOP_WITHIN_S)
        if running:
            log.error("gateway %s: its loop did not stop within %s s", gateway_id, STOP_WITHIN_S)
        try:
            async with asyncio.timeout(STOP_WITHIN_S):
                await gateway_loop.client.close()
                await asyncio.to_thread(gateway_loop.close)
        except TimeoutError:
            log.warning("gateway %s: %d writes still running at stop; they finish on their own",
                        gateway_id, len(gateway_loop.pending_writes))

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
        every = min(self.settings.gateway_reload_s, self.settings.lease_ttl_s / 3)
        try:
            await self.sync_gateways()
            log.info("worker %s: %d gateways, %d meters", self.worker_id, len(self.loops),
                     sum(len(gl.spec.meters) for gl in self.loops.values()))
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._reload.wait(), every)
                self._reload.clear()
                await self.sync_gateways()
                await asyncio.to_thread(store.expire_overdue_commands, self.engine)
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
            await asyncio.gather(*(self._stop_gateway(g) for g in list(self.loops)),
                                 return_exceptions=True)  # together: a second or two in all
            await asyncio.to_thread(release_leases, self.engine, self.worker_id)

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
