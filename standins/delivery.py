"""How the sandbox delivers the providers' notifications: well, or badly on purpose.

Real providers repeat a notification, send it late, or never send it; the sandbox does each on
demand, so the notify path and the order jobs meet them before production does:
- "normal": once, at once;
- "repeat": `repeat` copies at once (3 by default);
- "late": the payment is in flight at the stand-in (queries do not see it, a close succeeds);
  after `late_s` seconds, or when released (POST /sandbox/notifications/release), it lands and
  its notification is sent, whatever happened to the order meanwhile;
- "never": the payment lands at the stand-in, and no notification is ever sent (a query sees
  the payment).
The mode is the app-wide `behaviour` (POST /sandbox/notify-behaviour), or a pay form's own
`notify` field. Refund notifications from the stand-ins follow the app-wide mode. A notification
is built when it is sent, so a late WeChat one carries a fresh timestamp, as WeChat's do.
Nothing here touches our database.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

NORMAL, REPEAT, LATE, NEVER = "normal", "repeat", "late", "never"
MODES = (NORMAL, REPEAT, LATE, NEVER)

Build = Callable[[], tuple[str, dict[str, str], bytes]]  # → (notify URL, headers, body)


@dataclass
class NotifyBehaviour:
    mode: str = NORMAL
    repeat: int = 3
    late_s: float | None = 60.0  # None: held until released

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if not 1 <= int(self.repeat) <= 100:
            raise ValueError("repeat must be 1 to 100")
        if self.late_s is not None and not 0 <= float(self.late_s) <= 86_400:
            raise ValueError("late_s must be 0 to 86400 seconds")


@dataclass
class _Held:
    build: Build
    label: str
    held_at: float


def acknowledged(reply) -> bool:
    """Alipay stops retrying on a 200 whose body is "success", WeChat Pay on 200 or 204."""
    if isinstance(reply, BaseException):
        return False
    return reply.status_code == 204 or (
        reply.status_code == 200 and reply.text.strip() in ("", "success"))


class SandboxNotifier:
    """Sends the sandbox's notifications the way `behaviour` says. Thread-safe. `dropped` and
    `held` let a test see what was not (yet) sent."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.behaviour = NotifyBehaviour()
        self.timeout = timeout
        self._lock = threading.Lock()
        self.held: list[_Held] = []
        self.dropped: list[str] = []

    async def send(self, build: Build, *, mode: str | None = None, label: str = "") -> bool:
        """Deliver one notification (from the event loop: the cashier). True unless a copy
        that was sent now was not acknowledged; "late" and "never" return True at once."""
        mode = mode or self.behaviour.mode
        if mode == NEVER:
            self._drop(label)
            return True
        if mode == LATE:
            self.hold(build, label)
            return True
        url, headers, body = build()
        copies = self.behaviour.repeat if mode == REPEAT else 1
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            replies = await asyncio.gather(
                *(client.post(url, content=body, headers=headers) for _ in range(copies)),
                return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                log.warning("sandbox could not deliver %s: %s", label, reply)
        return all(acknowledged(r) for r in replies)

    def deliver(self, url: str, build: Callable[[], tuple[dict[str, str], bytes]]) -> None:
        """The stand-ins' hook (refund notices): from any thread, never blocking."""
        def full() -> tuple[str, dict[str, str], bytes]:
            return (url, *build())

        mode = self.behaviour.mode
        if mode == NEVER:
            self._drop(url)
        elif mode == LATE:
            self.hold(full, url)
        else:
            copies = self.behaviour.repeat if mode == REPEAT else 1
            threading.Thread(target=self._post_copies, args=(full, copies), daemon=True).start()

    def hold(self, build: Build, label: str = "") -> None:
        """Keep a notification back; send it after `behaviour.late_s` (or on `release`)."""
        item = _Held(build, label, time.monotonic())
        with self._lock:
            self.held.append(item)
        if self.behaviour.late_s is not None:
            timer = threading.Timer(self.behaviour.late_s, self._release_one, args=(item,))
            timer.daemon = True
            timer.start()

    def release(self) -> int:
        """Send every held notification now (blocking); how many there were."""
        with self._lock:
            items, self.held = self.held, []
        for item in items:
            self._post_copies(item.build, 1)
        return len(items)

    def _release_one(self, item: _Held) -> None:
        with self._lock:
            if item not in self.held:
                return  # released already
            self.held.remove(item)
        self._post_copies(item.build, 1)

    def _drop(self, label: str) -> None:
        with self._lock:
            self.dropped.append(label)

    def _post_copies(self, build: Build, copies: int) -> None:
        try:
            url, headers, body = build()
            with httpx.Client(timeout=self.timeout) as client:
                for _ in range(copies):
                    reply = client.post(url, content=body, headers=headers)
                    if not acknowledged(reply):
                        log.warning("sandbox notification to %s: %s %s", url,
                                    reply.status_code, reply.text[:100])
        except Exception as exc:  # a delivery thread must not die loudly: log, as a provider would
            log.warning("sandbox could not deliver a notification: %s", exc)
