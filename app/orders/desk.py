"""The notify desk: where one process's provider notifications are verified and credited.

Notifications that arrive while the database is busy with earlier ones wait here, in the event
loop, holding no thread; whoever is free takes every waiting one (up to `MAX_BATCH`) and
handles them together in one transaction (group commit) with `confirm_many`: per notification
what `confirm_paid` does, with the first copies of payments credited together (their ledger
entries, balances and notices in a statement each), and one BEGIN, one COMMIT and one
connection checkout for the lot. Alone, a notification is a batch of one and waits for nothing.

Under a storm the senders whose notifications a batch just answered come back with their next
ones within a few milliseconds, while the few that arrived during the batch wait: taken at
once, those few make a small batch, whose answer sends the large group past again, and the
batches alternate large and small (bench.notify: 21, 2, 21, 2, …). So when fewer are waiting
than the last batch answered, the desk waits for that many, at most `LINGER_S`: the groups
merge, and a statement costs its CPU once for more notifications. A notification that comes
alone after another one alone does not wait.

Exactly once does not depend on the batching: an order is credited on its single pending → paid
transition, and the ledger's idempotency keys are unique, whatever else shares the transaction.
A refused notification writes nothing (see `confirm_paid`), so it can share a transaction with
accepted ones; refusals are recorded once the batch has committed. If the batch's transaction
fails (a deadlock, a lost connection), each of its notifications is handled again on its own, in
a transaction of its own, so one cannot fail the others.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from app import metrics
from app.db import transaction
from app.orders.refunds import settle_refund_notice
from app.orders.services import (CREDITED, REFUND_NOTICE, Refused, confirm_many, our_ids,
                                 record_refused)
from payments.base import Notification, NotificationRejected

log = logging.getLogger(__name__)

# How many batches a process has in the database at once: one. On SQLite its writes queue on one
# lock anyway; on PostgreSQL, with a process per core, two at once measured slower (bench.notify,
# `serve --processes 2`: 963 against 1,010-1,023 credits/s) and the batches grow instead.
BATCHES_AT_ONCE = {"sqlite": 1, "postgresql": 1}
MAX_BATCH = 32  # notifications in one transaction, at most
LINGER_S = 0.003  # the longest a batch waits to be as large as the last one


@dataclass
class Arrived:
    """One notification as it came: the provider that must verify it, its raw headers and body
    (the signature covers the raw bytes), and the future its request waits on."""

    channel: str
    provider: Any
    headers: dict[str, str]
    body: bytes
    done: asyncio.Future = field(repr=False)


# (channel, reason, detail, out_trade_no, payload) for `record_refused`
Refusal = tuple[str, str, str, str, Any]


class NotifyDesk:
    """One event loop's notify desk (see the module's docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.batches_at_once = BATCHES_AT_ONCE.get(engine.dialect.name, 1)
        self.waiting: collections.deque[Arrived] = collections.deque()
        self.running = 0
        self.expected = 0  # how many the last batch answered
        self._enough: asyncio.Future | None = None  # set once `expected` are waiting
        self._tasks: set[asyncio.Task] = set()
        # a thread of its own per batch at once: anyio's thread pool (run_in_threadpool) costs
        # three times the CPU of a plain executor to hand a batch over
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self.batches_at_once, thread_name_prefix="notify-desk")

    async def handle(self, channel: str, provider, headers: dict[str, str], body: bytes) -> bool:
        """True when the notification was accepted (credited, a repeat, a refund notice, a
        payment after close kept for a manager): the provider gets its acknowledgement. False
        when it was refused (recorded with its reason): the provider gets its failure reply."""
        done = asyncio.get_running_loop().create_future()
        self.waiting.append(Arrived(channel, provider, headers, body, done))
        enough = self._enough
        if enough is not None and len(self.waiting) >= self.expected and not enough.done():
            enough.set_result(None)
        if self.running < self.batches_at_once:
            self.running += 1
            # a context of its own: the desk serves many requests, it must not log with the
            # ids (app/logs.py) of the one that happened to start it
            task = asyncio.create_task(self._run(), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.waiting:
                if len(self.waiting) < min(self.expected, MAX_BATCH):
                    await self._linger(loop)
                batch = [self.waiting.popleft()
                         for _ in range(min(MAX_BATCH, len(self.waiting)))]
                self.expected = len(batch)
                try:
                    outcomes = await loop.run_in_executor(self._executor, handle_batch,
                                                          self.engine, batch)
                except Exception as exc:  # noqa: BLE001 - each request answers with it
                    outcomes = [exc] * len(batch)
                for arrived, outcome in zip(batch, outcomes):
                    if arrived.done.done():  # the sender went away; the work is done anyway
                        continue
                    if isinstance(outcome, BaseException):
                        arrived.done.set_exception(outcome)
                    else:
                        arrived.done.set_result(outcome)
        finally:
            self.running -= 1

    async def _linger(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until `expected` notifications are waiting, at most `LINGER_S`."""
        self._enough = enough = loop.create_future()
        timer = loop.call_later(LINGER_S, _settle, enough)
        try:
            await enough
        finally:
            timer.cancel()
            self._enough = None


def _settle(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def handle_batch(engine: Engine, batch: list[Arrived]) -> list[bool | Exception]:
    """Verify and credit `batch` (in a thread): True accepted, False refused, or the exception
    that kept a notification from being handled (its request fails; the provider retries)."""
    outcomes: list[bool | Exception] = [False] * len(batch)
    refusals: dict[int, Refusal] = {}
    verified: list[tuple[int, Notification]] = []
    for i, arrived in enumerate(batch):
        try:
            verified.append((i, arrived.provider.parse_notify(arrived.headers, arrived.body)))
        except NotificationRejected as exc:
            refusals[i] = (arrived.channel, exc.reason, exc.message, "",
                           arrived.body.decode("utf-8", "replace"))
        except Exception as exc:  # noqa: BLE001 - a bug's: this one's request fails, not all
            log.error("%s notify: verifying failed", arrived.channel, exc_info=True)
            outcomes[i] = exc
    # Orders are updated in one order in every batch: two batches holding copies of the same
    # payments cannot deadlock on them.
    verified.sort(key=lambda item: item[1].out_trade_no)
    results: list[tuple[int, Notification, Any]] = []
    try:
        if verified:
            with transaction(engine) as session:
                results = _confirm_all(session, batch, verified)
    except Exception as exc:  # noqa: BLE001
        if len(verified) == 1:  # alone already: its request fails with it
            _log_failure(batch[verified[0][0]].channel, verified[0][1].out_trade_no, exc)
            results = [(verified[0][0], verified[0][1], exc)]
        else:
            results = _one_at_a_time(engine, batch, verified, exc)
    handled: dict[str, list[str]] = {}  # outcome: the orders, logged once committed
    for i, notification, result in results:
        if isinstance(result, Exception):
            outcomes[i] = result
        elif isinstance(result, tuple):
            refusals[i] = result
        else:
            handled.setdefault(result, []).append(notification.out_trade_no)
            if result == CREDITED:
                metrics.CREDITS.labels(batch[i].channel).inc()
            outcomes[i] = True
    if handled:  # one line a batch, each order on it (a line each cost 45 µs of CPU)
        log.info("notifications handled: %s",
                 ", ".join(f"{outcome} {len(nos)}" for outcome, nos in handled.items()),
                 extra={"orders": handled})
    if refusals:
        for i, (channel, reason, detail, out_trade_no, _) in refusals.items():
            log.warning("%s notify refused (%s): %s", channel, reason, detail,
                        extra={"order": out_trade_no} if out_trade_no else None)
        try:
            with transaction(engine) as session:
                for channel, reason, detail, out_trade_no, payload in refusals.values():
                    record_refused(session, channel=channel, reason=reason, detail=detail,
                                   out_trade_no=out_trade_no, payload=payload)
        except Exception as exc:  # noqa: BLE001 - the refused requests fail with it
            for i in refusals:
                outcomes[i] = exc
    return outcomes


def _log_failure(channel: str, out_trade_no: str, exc: Exception) -> None:
    """A notification not handled. A database error is logged once, by the notify view (with
    the provider's failure reply); anything else is a bug: its traceback here."""
    if isinstance(exc, SQLAlchemyError):
        return
    log.error("%s notify %s failed", channel, out_trade_no, exc_info=exc,
              extra={"order": out_trade_no})


def _one_at_a_time(engine: Engine, batch: list[Arrived], verified: list[tuple[int, Notification]],
                   exc: Exception) -> list[tuple[int, Notification, Any]]:
    # a database that is down fails them all again, each logged once by the view
    (log.debug if isinstance(exc, SQLAlchemyError) else log.warning)(
        "a batch of %d notifications failed; handling them one at a time", len(verified),
        exc_info=exc)
    return [(i, notification, _confirm_alone(engine, batch, i, notification))
            for i, notification in verified]


def _confirm_all(session, batch: list[Arrived], verified: list[tuple[int, Notification]]
                 ) -> list[tuple[int, Notification, str | Refusal]]:
    """`confirm_many` (and each refund notice settled) in the caller's transaction: per
    notification the outcome to log, or the refusal to record."""
    results = confirm_many(session, [(notification, our_ids(batch[i].provider))
                                     for i, notification in verified])
    done: list[tuple[int, Notification, str | Refusal]] = []
    for (i, notification), result in zip(verified, results):
        if isinstance(result, Refused):
            done.append((i, notification, (batch[i].channel, result.reason, result.detail,
                                           notification.out_trade_no, notification.raw)))
            continue
        outcome = result.outcome
        if outcome == REFUND_NOTICE:
            outcome += ": " + settle_refund_notice(session, notification, result.order)
        done.append((i, notification, outcome))
    return done


def _confirm_alone(engine: Engine, batch: list[Arrived], i: int,
                   notification: Notification) -> str | Refusal | Exception:
    try:
        with transaction(engine) as session:
            return _confirm_all(session, batch, [(i, notification)])[0][2]
    except Exception as exc:  # noqa: BLE001 - this notification's request fails with it
        _log_failure(batch[i].channel, notification.out_trade_no, exc)
        return exc
