"""One gateway, one bus, one loop: what goes out next on the wire.

Order of work on a bus: restores, then cuts (both from `store.due_commands`, restores first),
then routine polling. The poll round checks for woken commands before each meter, so a restore
queued during a round goes out as the very next transaction. A command is written, then the
relay is read back until it is in the wanted state or the attempt's deadline passes (复核); a
meter whose last read relay already has the wanted state is read first and completes without a
write. Attempts and readings are stored on this gateway's own database threads, so the bus does
not wait for the database. No SQL and no register numbers here.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy.engine import Engine

from app import logs, metrics
from app.db import utcnow
from app.settings import Settings
from meters import store
from meters.breaker import Breaker
from meters.store import CONFIRMED, AttemptResult, DueCommand, GatewaySpec, ReadingResult
from meters.protocol import MeterBus
from meters.transport import MeterError

log = logging.getLogger(__name__)

READINGS_PER_BATCH = 128  # readings are stored in batches of this many,
FLUSH_EVERY_S = 2.0  # or at least this often: fewer transactions, and a slow bus (4.8 s a round)
# still shows its readings within the round. A gateway of up to 128 meters read in under 2 s
# stores its round as one batch at the round's end (bench.poll, 100 × 100 meters: the first
# round 1.95 → 1.78 s and every reading stored 3.37 → 3.13 s, against batches of 64).
# Unchanged readings only move the meters' reading time: they go with the next batch of
# readings, or on their own once this many are waiting or this long has passed, and at the
# end of every round. (Each flush is a transaction; on a fast bus, 100 gateways flushing
# every 0.5 s cost more than the touches themselves.)
TOUCHES_PER_BATCH = 256
TOUCH_EVERY_S = 5.0


class GatewayLoop:
    def __init__(self, spec: GatewaySpec, client: MeterBus, engine: Engine, settings: Settings):
        self.spec = spec
        self.client = client
        self.engine = engine
        self.settings = settings
        self.wake = asyncio.Event()
        # Database calls run on threads of this gateway's own: reads never queue behind a
        # write, and writes stay in order.
        self.read_thread = ThreadPoolExecutor(1, thread_name_prefix=f"gw{spec.gateway_id}-read")
        self.write_thread = ThreadPoolExecutor(1, thread_name_prefix=f"gw{spec.gateway_id}-write")
        self.recording: dict[int, asyncio.Task] = {}  # command id → its attempt being stored
        self.recorded_at: dict[int, float] = {}  # command id → when its last attempt was stored
        self.breaker = Breaker(settings.breaker_failures, settings.breaker_probe_s)
        self.relay_open: dict[int, bool] = {}  # meter id → relay as last read on this bus
        self.readings: list[ReadingResult] = []
        # What this loop last read and sent to be stored, per meter: a reading equal to it only
        # moves the meter's reading time (`touches`), except on a full pass (every
        # `full_check_s`), when every reading is judged again (notices and cut policy are
        # re-evaluated with time even when nothing is consumed).
        self.seen: dict[int, tuple[int, bool]] = {}
        self.touches: list[int] = []
        self.full_pass_at = 0.0
        self.flushed_at = 0.0
        self.round_requested = False  # set (then wake) to poll a round now
        self.rounds = 0  # poll rounds completed
        self.last_round_s: float | None = None  # how long the last one took
        self.pending_writes: set[Future] = set()

    # --- database, off the event loop --------------------------------------------------------

    async def db(self, fn, *args):
        """Run a store function that writes, in order, and wait for it."""
        return await asyncio.get_running_loop().run_in_executor(
            self.write_thread, fn, self.engine, *args)

    async def db_read(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(
            self.read_thread, fn, self.engine, *args)

    def db_later(self, fn, *args) -> None:
        """Queue a write without waiting for it (in order with the others)."""
        future = self.write_thread.submit(fn, self.engine, *args)
        self.pending_writes.add(future)
        future.add_done_callback(self._write_done)

    def _write_done(self, future: Future) -> None:
        self.pending_writes.discard(future)
        if future.exception() is not None:
            log.error("gateway %s: storing failed", self.spec.gateway_id,
                      exc_info=future.exception())

    def flush_readings(self) -> None:
        """Queue what was polled since the last flush, readings and touches, as one write."""
        self.flushed_at = asyncio.get_running_loop().time()
        if self.readings or self.touches:
            batch, self.readings = self.readings, []
            touched, self.touches = self.touches, []
            self.db_later(store.record_poll, batch, touched, utcnow() if touched else None)

    def close(self) -> None:
        self.read_thread.shutdown(wait=False)
        self.write_thread.shutdown(wait=True)  # stored what was read

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        logs.bind(gateway=self.spec.name)  # this task's lines, and the tasks it starts
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        while True:
            self.wake.clear()
            await self.run_due_commands()
            if loop.time() >= next_poll or self.round_requested:
                self.round_requested = False
                started = loop.time()
                await self.poll_round()
                self.rounds += 1
                self.last_round_s = loop.time() - started
                metrics.POLL_ROUND_SECONDS.labels(self.spec.name).observe(self.last_round_s)
                next_poll = started + self.settings.poll_interval_s
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
        """One attempt at a command: write the relay command (unless the relay already reads
        the wanted state), then read the relay until it is in the wanted state or the
        confirmation deadline passes. The attempt is stored by a task of its own; until it is
        stored the command is not tried again. Returns that task (result: the new state).
        Every line logged on the way, the storing task's included, carries the command's ids."""
        with logs.bound(command=command.command_id, meter=command.meter_id,
                        unit=command.unit_id, action=command.action):
            return await self._execute(command)

    async def _execute(self, command: DueCommand) -> asyncio.Task:
        if command.is_read:
            return await self.execute_read(command)
        loop = asyncio.get_running_loop()
        started = utcnow()
        relay_open = None
        try:
            if self.relay_open.get(command.meter_id) == command.wants_open:
                relay_open = await self.client.read_relay(command.unit_id)
            if relay_open != command.wants_open:
                await self.client.write_relay(command.unit_id, command.wants_open)
                deadline = loop.time() + self.settings.confirm_timeout_s
                while True:
                    relay_open = await self.client.read_relay(command.unit_id)
                    if relay_open == command.wants_open or loop.time() >= deadline:
                        break
                    await asyncio.sleep(0.05)
            if relay_open == command.wants_open:
                result = AttemptResult(started, utcnow(), CONFIRMED, relay_open)
            else:
                result = AttemptResult(started, utcnow(), "mismatch", relay_open,
                                       detail="relay did not move before the deadline")
            self.relay_open[command.meter_id] = relay_open
        except MeterError as exc:
            result = AttemptResult(started, utcnow(), exc.kind, relay_open,
                                   exception_code=exc.exception_code, detail=str(exc))
        task = asyncio.create_task(self._record(command, result))
        self.recording[command.command_id] = task
        return task

    async def execute_read(self, command: DueCommand) -> asyncio.Task:
        """An on-demand read: the meter read now, its reading stored (judged and charged like
        any poll) and then the command completed by an attempt carrying the relay read."""
        started = utcnow()
        try:
            snapshot = await self.client.read_snapshot(command.unit_id)
        except MeterError as exc:
            result = AttemptResult(started, utcnow(), exc.kind, None,
                                   exception_code=exc.exception_code, detail=str(exc))
        else:
            self.breaker.succeeded(command.meter_id)
            self.relay_open[command.meter_id] = snapshot.relay_open
            self.seen[command.meter_id] = (snapshot.energy_wh, snapshot.relay_open)
            read_at = utcnow()
            self.readings.append(ReadingResult(command.meter_id, snapshot.energy_wh,
                                               snapshot.relay_open, read_at,
                                               tuple(snapshot.period_raw)))
            self.flush_readings()  # the reading is stored before the attempt that completes it
            result = AttemptResult(started, read_at, CONFIRMED, snapshot.relay_open,
                                   detail=f"read on demand: {snapshot.energy_wh} Wh")
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
        """Read every meter once (an open breaker lets a meter through only to probe it);
        commands queued meanwhile go out before the next read."""
        loop = asyncio.get_running_loop()
        full = loop.time() >= self.full_pass_at
        if full:
            self.full_pass_at = loop.time() + self.settings.full_check_s
        for meter in self.spec.meters:
            if self.wake.is_set():
                self.wake.clear()
                await self.run_due_commands()
            if not self.breaker.may_poll(meter.meter_id, loop.time()):
                continue
            try:
                snapshot = await self.client.read_snapshot(meter.unit_id)
            except MeterError as exc:
                self.seen.pop(meter.meter_id, None)
                self.breaker.failed(meter.meter_id, loop.time())
                self.db_later(store.record_poll_failure, meter.meter_id, str(exc),
                              self.settings.breaker_failures)
                continue
            came_back = self.breaker.succeeded(meter.meter_id)
            self.relay_open[meter.meter_id] = snapshot.relay_open
            key = (snapshot.energy_wh, snapshot.relay_open)
            if not full and not came_back and self.seen.get(meter.meter_id) == key:
                self.touches.append(meter.meter_id)
            else:
                self.seen[meter.meter_id] = key
                self.readings.append(ReadingResult(meter.meter_id, snapshot.energy_wh,
                                                   snapshot.relay_open, utcnow(),
                                                   tuple(snapshot.period_raw)))
            if self.readings:
                if (len(self.readings) >= READINGS_PER_BATCH
                        or loop.time() - self.flushed_at >= FLUSH_EVERY_S):
                    self.flush_readings()
            elif (len(self.touches) >= TOUCHES_PER_BATCH
                    or loop.time() - self.flushed_at >= TOUCH_EVERY_S):
                self.flush_readings()
        self.flush_readings()
