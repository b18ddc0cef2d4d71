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
import contextlib
import datetime as dt
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from app import logs, metrics
from app.db import utcnow
from app.settings import Settings
from meters import store
from meters.breaker import Breaker
from meters.store import CONFIRMED, AttemptResult, DueCommand, GatewaySpec, ReadingResult
from meters.protocol import CONNECTION, ENERGY_WRAP_WH, EXCEPTION, TIMEOUT, MeterBus, MeterError, RelayState

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
READ_BACK_EVERY_S = 0.05  # a command's relay read back this often until confirmed
GATEWAY_PROBE_METERS = 3  # a gateway down: a round tries this many meters before giving up


@dataclass
class Confirming:
    """A command written to its meter, its relay not yet read back in the wanted state."""

    command: DueCommand
    started: dt.datetime
    deadline: float  # loop time: the attempt ends unconfirmed (mismatch) after it
    next_read: float
    state: RelayState


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
        self.confirming: dict[int, Confirming] = {}  # command id → its read-backs, interleaved
        self.down_until: float | None = None  # the gateway is down: no round before this
        self.down_rounds = 0

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
            self.db_later(store.record_poll, batch, touched, utcnow() if touched else None,
                          ENERGY_WRAP_WH[self.spec.protocol])

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
            await self.run_confirmations()
            if self.down_until is not None and loop.time() < self.down_until:
                next_poll = max(next_poll, self.down_until)  # back off on the whole gateway
            if loop.time() >= next_poll or self.round_requested:
                self.round_requested = False
                started = loop.time()
                await self.poll_round()
                self.rounds += 1
                self.last_round_s = loop.time() - started
                metrics.POLL_ROUND_SECONDS.labels(self.spec.name).observe(self.last_round_s)
                next_poll = started + self.settings.poll_interval_s
            wake_at = min(next_poll, loop.time() + self.settings.sweep_interval_s)
            if self.confirming:
                wake_at = min(wake_at, min(c.next_read for c in self.confirming.values()))
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.0, wake_at - loop.time()))
            except TimeoutError:
                pass

    async def run_due_commands(self) -> None:
        loop = asyncio.get_running_loop()
        read_started = loop.time()
        due = await self.db_read(store.due_commands, self.spec.gateway_id)
        # A read that began before an attempt was stored may still show that command as due.
        self.recorded_at = {cid: t for cid, t in self.recorded_at.items() if t >= read_started}
        for command in due:
            if (command.command_id in self.recording or command.command_id in self.recorded_at
                    or command.command_id in self.confirming):
                continue
            await self.execute(command)

    async def execute(self, command: DueCommand) -> None:
        """One attempt at a command: write the relay command (unless the relay already reads
        the wanted state) and read the relay back once. Not yet in the wanted state, the
        command waits among `confirming`: its read-backs are interleaved with every other
        transaction on the bus (a new restore never waits for another meter's confirmation)
        until the relay is in the wanted state or the attempt's deadline passes. The attempt is
        stored by a task of its own; until it is stored the command is not tried again. Every
        line logged on the way, the storing task's included, carries the command's ids."""
        with logs.bound(command=command.command_id, meter=command.meter_id,
                        unit=command.unit_id, action=command.action):
            await self._execute(command)

    async def _execute(self, command: DueCommand) -> None:
        if command.is_read:
            await self.execute_read(command)
            return
        loop = asyncio.get_running_loop()
        started = utcnow()
        state = None
        try:
            if self.relay_open.get(command.meter_id) == command.wants_open:
                state = await self.client.read_relay(command.unit_id)
                self.answered(command.meter_id)
            if state is None or not command.confirmed_by(state):
                await self.client.write_relay(command.unit_id, command.wants_open,
                                              close_allowed=command.close_allowed)
                self.answered(command.meter_id)
                state = await self.client.read_relay(command.unit_id)
        except MeterError as exc:
            if command.wants_open and exc.kind == EXCEPTION:
                # refused: a DL/T 645 meter in keep-power mode answers a trip with an error;
                # its status says why (read once; a meter that does not answer says nothing)
                with contextlib.suppress(MeterError):
                    state = await self.client.read_relay(command.unit_id)
            self._finish(command, AttemptResult(
                started, utcnow(), exc.kind, state.open if state else None,
                exception_code=exc.exception_code, detail=str(exc) + (
                    _status_words(state) if state else ""),
                status_bits=state.status_bits if state else 0))
            return
        self.relay_open[command.meter_id] = state.open
        if (command.confirmed_by(state) or self.settings.confirm_timeout_s <= 0
                or (command.wants_open and (state.keep_power or state.relay_fault))):
            # done, or a cut the meter says it will not do: no read-backs to wait for
            self._finish(command, self._result(command, started, state))
            return
        now = loop.time()
        self.confirming[command.command_id] = Confirming(
            command, started, now + self.settings.confirm_timeout_s, now + READ_BACK_EVERY_S,
            state)

    async def run_confirmations(self) -> None:
        """Read back, once each, the relays of the commands waiting whose next read is due;
        new commands first (a restore queued meanwhile goes out before the next read-back)."""
        loop = asyncio.get_running_loop()
        for command_id, waiting in list(self.confirming.items()):
            if self.wake.is_set():
                self.wake.clear()
                await self.run_due_commands()
            if loop.time() < waiting.next_read:
                continue
            command = waiting.command
            with logs.bound(command=command.command_id, meter=command.meter_id,
                            unit=command.unit_id, action=command.action):
                try:
                    state = await self.client.read_relay(command.unit_id)
                except MeterError as exc:
                    del self.confirming[command_id]
                    self._finish(command, AttemptResult(
                        waiting.started, utcnow(), exc.kind, waiting.state.open,
                        exception_code=exc.exception_code, detail=str(exc),
                        status_bits=waiting.state.status_bits))
                    continue
                self.answered(command.meter_id)
                self.relay_open[command.meter_id] = state.open
                waiting.state = state
                if command.confirmed_by(state) or loop.time() >= waiting.deadline:
                    del self.confirming[command_id]
                    self._finish(command, self._result(command, waiting.started, state))
                else:
                    waiting.next_read = loop.time() + READ_BACK_EVERY_S

    def _result(self, command: DueCommand, started, state: RelayState) -> AttemptResult:
        armed = command.close_allowed and state.open and state.close_allowed
        if command.confirmed_by(state):
            return AttemptResult(started, utcnow(), CONFIRMED, state.open,
                                 status_bits=state.status_bits, armed=armed,
                                 detail="armed for the button (允许合闸)" if armed else "")
        return AttemptResult(started, utcnow(), "mismatch", state.open,
                             status_bits=state.status_bits,
                             detail="relay did not move before the deadline"
                                    + _status_words(state))

    def answered(self, meter_id: int) -> None:
        """Any transaction the meter answered: it is not failing (its breaker closes)."""
        if self.breaker.failures.get(meter_id):
            self.breaker.succeeded(meter_id)
        if self.down_until is not None:
            self._gateway_up()

    def _finish(self, command: DueCommand, result: AttemptResult) -> None:
        task = asyncio.create_task(self._record(command, result))
        self.recording[command.command_id] = task

    async def execute_read(self, command: DueCommand) -> None:
        """An on-demand read: the meter read now, its reading stored (judged and charged like
        any poll) and then the command completed by an attempt carrying the relay read."""
        started = utcnow()
        try:
            snapshot = await self.client.read_snapshot(command.unit_id)
        except MeterError as exc:
            result = AttemptResult(started, utcnow(), exc.kind, None,
                                   exception_code=exc.exception_code, detail=str(exc))
        else:
            self.answered(command.meter_id)
            self.relay_open[command.meter_id] = snapshot.relay_open
            self.seen[command.meter_id] = (snapshot.energy_wh, snapshot.relay_open)
            read_at = utcnow()
            self.readings.append(ReadingResult(command.meter_id, snapshot.energy_wh,
                                               snapshot.relay_open, read_at,
                                               tuple(snapshot.period_raw)))
            self.flush_readings()  # the reading is stored before the attempt that completes it
            result = AttemptResult(started, read_at, CONFIRMED, snapshot.relay_open,
                                   detail=f"read on demand: {snapshot.energy_wh} Wh",
                                   status_bits=snapshot.status_bits)
        self._finish(command, result)

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
        commands queued meanwhile go out before the next read, read-backs due between reads.

        A gateway that cannot be reached, or whose meters all fail a round, is down: one
        anomaly for the gateway (`store.record_gateway_down`), not one per meter; while down,
        a round only probes its first few meters, and the rounds back off."""
        loop = asyncio.get_running_loop()
        full = loop.time() >= self.full_pass_at
        if full:
            self.full_pass_at = loop.time() + self.settings.full_check_s
        probing = self.down_until is not None
        answered = failed = 0
        for meter in self.spec.meters:
            if self.wake.is_set():
                self.wake.clear()
                await self.run_due_commands()
            if self.confirming:
                await self.run_confirmations()
            if self.down_until is not None and failed >= GATEWAY_PROBE_METERS:
                break  # still down: probed enough
            if self.down_until is None and not self.breaker.may_poll(meter.meter_id, loop.time()):
                continue
            try:
                snapshot = await self.client.read_snapshot(meter.unit_id)
            except MeterError as exc:
                self.seen.pop(meter.meter_id, None)
                if exc.kind == CONNECTION:
                    self._gateway_down(f"no connection ({exc.detail or exc.what or exc})")
                    break
                if exc.kind == TIMEOUT:
                    failed += 1
                else:  # the gateway answered (an exception such as 0x0B): it is up
                    answered += 1
                    if self.down_until is not None:
                        self._gateway_up()
                if self.down_until is None:  # a meter's failures count while its gateway is up
                    self.breaker.failed(meter.meter_id, loop.time())
                    self.db_later(store.record_poll_failure, meter.meter_id, str(exc),
                                  self.settings.breaker_failures)
                continue
            answered += 1
            if self.down_until is not None:
                self._gateway_up()
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
        # One silent meter is the meter's fault; two or more, and nothing answered: the gateway's.
        if answered == 0 and failed >= 2:
            if self.down_until is None or probing:
                self._gateway_down("no meter answered a whole round")
        self.flush_readings()

    # --- a whole gateway down ----------------------------------------------------------------

    def _gateway_down(self, detail: str) -> None:
        loop = asyncio.get_running_loop()
        if self.down_until is None:
            log.warning("gateway %s (%s:%s) down: %s", self.spec.name, self.spec.host,
                        self.spec.port, detail)
        self.down_rounds += 1
        backoff = min(self.settings.breaker_probe_s,
                      self.settings.poll_interval_s * 2 ** min(self.down_rounds, 10))
        self.down_until = loop.time() + backoff
        self.db_later(store.record_gateway_down, self.spec.gateway_id, detail,
                      self.settings.breaker_failures)

    def _gateway_up(self) -> None:
        log.info("gateway %s (%s:%s) answers again", self.spec.name, self.spec.host,
                 self.spec.port)
        self.down_until = None
        self.down_rounds = 0
        self.db_later(store.record_gateway_up, self.spec.gateway_id)


def _status_words(state: RelayState) -> str:
    """What the meter's status says about a relay that did not move, for the attempt's detail."""
    words = [word for flag, word in ((state.keep_power, "keep-power (保电)"),
                                     (state.relay_fault, "relay fault"),
                                     (state.cover_open, "cover open"),
                                     (state.close_allowed, "armed (允许合闸)")) if flag]
    return f"; the meter reports: {', '.join(words)}" if words else ""
