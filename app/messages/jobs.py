"""The message jobs: notices become messages (`MessageJobs.plan`), due messages are sent
(`MessageJobs.deliver`), both every `message_jobs_every_s` seconds in the process that runs the
order and billing jobs (`run_message_jobs`, started by app/stack.py).

The rules are app/messages/services.py's; here the providers are called (`app.state.messengers`:
`.sms` a messaging.sms.SmsSender, `.wechat` a messaging.wechat.WechatMessenger, either None
when not configured), always outside a transaction, from worker threads (each send blocks on
HTTPS for up to its timeout). Every function takes `now` for tests; by default the clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed

import sqlalchemy as sa

from app import metrics
from app.db import transaction, utcnow
from app.jobs.runs import record_run
from app.messages import services, templates
from app.messages.models import FAILED, QUEUED, SENT, SKIPPED, SMS, WECHAT_SUBSCRIBE, Message
from app.notices.models import Notice
from messaging.base import DeliveryError

log = logging.getLogger(__name__)

MESSAGE_JOBS = "message_jobs"  # its name in job_run (/readyz)
EVERY_S = 2.0
BATCH = 20  # messages claimed at once
MAX_BATCHES = 50  # per sweep: 1,000 messages, then the next sweep goes on
SENDERS = 4  # sends at once
FOLLOWS_TTL_S = 600.0  # how long an openid's following is believed
FULL_CHECK_S = 30.0  # with no new notice, the notices are still looked at this often
RECORD_EVERY_S = 20.0  # a sweep recorded in job_run (for /readyz) at most this often


class MessageJobs:
    """The two jobs over one database and one set of messengers; thread-safe for one sweep at a
    time (`run_message_jobs` runs them one after the other)."""

    def __init__(self, engine, settings, messengers) -> None:
        self.engine, self.settings, self.messengers = engine, settings, messengers
        self._follows: dict[str, tuple[bool, float]] = {}
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="messages")
        self._seen_notice = -1  # the highest notice id at the last look
        self._looked_at = 0.0
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    @property
    def _wechat(self):
        return getattr(self.messengers, "wechat", None)

    @property
    def _sms(self):
        return getattr(self.messengers, "sms", None)

    # --- notices → messages ---------------------------------------------------------------

    def plan(self, now: dt.datetime | None = None, *, force: bool = True) -> int:
        """Make the messages of the notices not handled yet; returns how many rows were made
        (skipped ones included). `force=False` first asks whether any notice came since the
        last look (one index read) and, if none did and the last full look is recent, stops."""
        with self._lock:
            return self._plan(now or utcnow(), force)

    def _plan(self, now: dt.datetime, force: bool) -> int:
        made = 0
        for batch in range(MAX_BATCHES):
            with transaction(self.engine, read_only=True) as s:
                newest = s.execute(sa.select(sa.func.max(Notice.id))).scalar() or 0
                if not force and batch == 0 and newest == self._seen_notice \
                        and time.monotonic() - self._looked_at < FULL_CHECK_S:
                    return made
                notices = services.pending_notices(s, now)
                households = services.gather(s, notices)
                facts = {n.id: services.facts_of(s, n, households[n.account_id])
                         for n in notices
                         if n.kind in templates.KINDS and n.account_id in households}
            self._seen_notice, self._looked_at = newest, time.monotonic()
            if not notices:
                return made
            follows = self.follows(services.openids_to_check(notices, households))
            planned = [p for n in notices for p in services.plan(
                n, households.get(n.account_id), facts.get(n.id), follows=follows,
                settings=self.settings, now=now, have_wechat=self._wechat is not None,
                have_sms=self._sms is not None)]
            with transaction(self.engine) as s:
                inserted = services.insert_planned(s, planned, now)
            for p in inserted:
                metrics.MESSAGES.labels(p.channel, p.status).inc()
            made += len(inserted)
            if not inserted:  # all there already (another process's): nothing more to do now
                return made
        return made

    def follows(self, openids: set[str]) -> dict[str, bool]:
        """Whether each openid follows the official account, remembered `FOLLOWS_TTL_S`; an
        openid WeChat could not answer for is left out (taken to follow: a send to a
        non-follower comes back 43004, and an SMS goes instead)."""
        found: dict[str, bool] = {}
        wechat, clock = self._wechat, time.monotonic()
        ask = []
        for openid in openids:
            known = self._follows.get(openid)
            if known and clock - known[1] < FOLLOWS_TTL_S:
                found[openid] = known[0]
            else:
                ask.append(openid)
        if wechat is None or not ask:
            return found

        for openid in ask:  # one at a time: the messenger takes one call at a time anyway
            try:
                found[openid] = bool(wechat.follows(openid))
            except DeliveryError as exc:
                log.warning("messages: WeChat did not say whether a resident follows (%s)",
                            exc.code)
                continue
            self._follows[openid] = (found[openid], clock)
        if len(self._follows) > 100_000:  # forget the oldest half
            for openid, _ in sorted(self._follows.items(), key=lambda kv: kv[1][1])[:50_000]:
                del self._follows[openid]
        return found

    # --- delivery -------------------------------------------------------------------------

    def deliver(self, now: dt.datetime | None = None) -> Counter:
        """Send the messages due (at `now`, or the clock at each step), a batch at a time, up to
        `MAX_BATCHES` batches; returns how many ended each way (sent, failed, retry, skipped,
        sms_instead, held, stuck)."""
        with self._lock:
            return self._deliver(now)

    def _deliver(self, now: dt.datetime | None) -> Counter:
        counts: Counter = Counter()
        with transaction(self.engine, read_only=True) as s:  # an idle sweep writes nothing
            due, stuck = services.anything_due(s, now or utcnow())
        if not (due or stuck):
            return counts
        if stuck:
            with transaction(self.engine) as s:
                stuck = services.fail_stuck(s, now or utcnow())
        if stuck:
            counts["stuck"] += stuck
            log.error("messages: %d left sending by a stopped process marked failed "
                      "(outcome unknown)", stuck)
        for _ in range(MAX_BATCHES):
            with transaction(self.engine) as s:
                report = services.claim_due(s, now or utcnow(), BATCH)
            counts["held"] += report.held
            for channel, _kind in report.superseded:
                counts["skipped"] += 1
                metrics.MESSAGES.labels(channel, SKIPPED).inc()
            futures = {self._pool.submit(self._send, c): c for c in report.claimed}
            fallbacks = 0
            for future in as_completed(futures):
                claimed = futures[future]
                outcome = self._record(claimed, future.result(), now)
                counts[outcome] += 1
                fallbacks += outcome == "sms_instead"
            if len(report.claimed) + report.held + len(report.superseded) < BATCH \
                    and not fallbacks:  # an SMS queued in place of a WeChat message: at once
                break
        return counts

    def _send(self, claimed: services.Claimed):
        """One send: the provider's id of the message, or the DeliveryError (an unexpected
        exception becomes a permanent one: retrying what may have gone could send it twice)."""
        try:
            body = json.loads(claimed.body or "{}")
            if claimed.channel == SMS:
                if self._sms is None:
                    raise DeliveryError("NOT_CONFIGURED", "no SMS provider is configured",
                                        permanent=True)
                return self._sms.send(claimed.recipient, claimed.template, body["params"])
            if self._wechat is None:
                raise DeliveryError("NOT_CONFIGURED", "WeChat messages are not configured",
                                    permanent=True)
            if claimed.channel == WECHAT_SUBSCRIBE:
                return self._wechat.send_subscribe(claimed.recipient, claimed.template,
                                                   body["data"], body.get("page", ""))
            return self._wechat.send_template(claimed.recipient, claimed.template,
                                              body["data"], body.get("url", ""))
        except DeliveryError as exc:
            return exc
        except Exception as exc:  # our bug or the SDK's: do not send again
            log.exception("messages: sending message %d failed unexpectedly", claimed.id)
            return DeliveryError("ERROR", f"{type(exc).__name__}: {exc}"[:300], permanent=True)

    def _record(self, claimed: services.Claimed, result, now: dt.datetime | None) -> str:
        at = now or utcnow()
        if not isinstance(result, DeliveryError):
            metrics.MESSAGE_ATTEMPTS.labels(claimed.channel, "ok").inc()
            with transaction(self.engine) as s:
                recorded = services.record_sent(s, claimed.id, str(result or ""), at)
            if not recorded:
                log.error("messages: message %d was sent but no longer sending", claimed.id)
            metrics.MESSAGES.labels(claimed.channel, SENT).inc()
            if claimed.notice_at is not None:
                timing = "reminder" if claimed.kind in templates.REMINDERS else "at_once"
                metrics.MESSAGE_SECONDS.labels(timing).observe(
                    max(0.0, (at - claimed.notice_at).total_seconds()))
            return "sent"
        metrics.MESSAGE_ATTEMPTS.labels(
            claimed.channel, "permanent" if result.permanent else "transient").inc()
        with transaction(self.engine) as s:
            outcome = services.record_failure(s, claimed, result.code, result.message,
                                              result.permanent, at, self.settings)
        if outcome.status == QUEUED:
            log.info("messages: message %d (%s, %s) refused for now (%s), again at %s",
                     claimed.id, claimed.channel, claimed.kind, result.code, outcome.retry_at)
            return "retry"
        metrics.MESSAGES.labels(claimed.channel, outcome.status).inc()
        if outcome.status == FAILED:
            log.warning("messages: message %d (%s, %s) failed: %s", claimed.id,
                        claimed.channel, claimed.kind, result)
            return "failed"
        if outcome.fallback:
            metrics.MESSAGES.labels(SMS, QUEUED).inc()
            return "sms_instead"
        return "skipped"

    def sweep(self, now: dt.datetime | None = None, *, force: bool = True) -> Counter:
        """Both jobs once: plan, then deliver."""
        made = self.plan(now, force=force)
        counts = self.deliver(now)
        if made:
            counts["made"] += made
        return counts


def queue_state(session, now: dt.datetime) -> tuple[int, float]:
    """How many messages are due and unsent, and the age in seconds of the oldest (0 if none):
    for /metrics."""
    count, oldest = session.execute(
        sa.select(sa.func.count(), sa.func.min(Message.next_attempt_at))
        .where(Message.status == QUEUED, Message.next_attempt_at <= now)).one()
    age = (now - oldest).total_seconds() if oldest is not None else 0.0
    return int(count or 0), max(0.0, age)


async def run_message_jobs(engine, settings, messengers, *, every_s: float = EVERY_S) -> None:
    """Sweep every `every_s` seconds until cancelled (notices looked at in full every
    `FULL_CHECK_S`, else only when a new one came). A failing sweep is logged and the next one
    comes all the same; sweeps are recorded in job_run for /readyz every `RECORD_EVERY_S`."""
    jobs = MessageJobs(engine, settings, messengers)
    recorded_at, last_error = 0.0, None
    try:
        while True:
            failed = None
            try:
                counts = await asyncio.to_thread(jobs.sweep, force=False)
                if counts:
                    log.info("message jobs: %s", dict(counts))
            except Exception as exc:
                failed = exc
                log.exception("message jobs: the sweep failed")
            if failed is not None or last_error is not None \
                    or time.monotonic() - recorded_at >= RECORD_EVERY_S:
                try:
                    await asyncio.to_thread(record_run, engine, MESSAGE_JOBS, failed)
                    recorded_at, last_error = time.monotonic(), failed
                except Exception:
                    log.warning("message jobs: their run could not be recorded", exc_info=True)
            await asyncio.sleep(every_s)
    finally:
        await asyncio.to_thread(jobs.close)
