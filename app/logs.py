"""Logs: every line structured (structlog over the standard library's `logging`).

The code logs with `logging.getLogger(__name__)` as before; one handler on the root logger
renders every record, ours and the libraries', through structlog's `ProcessorFormatter`:
- **JSON**, one object a line (`FEIKONG_LOG_FORMAT=json`; the default when stderr is not a
  terminal, i.e. under systemd or a container): `at` (UTC, ISO 8601), `level`, `logger`,
  `event` (the message), and the ids of the path it belongs to;
- **readable** key=value lines on a terminal (`console`, the demo's).

The ids come from context variables (`structlog.contextvars`): `bind(order=…, account=…)` in a
path puts them on every line logged below it, in that task and in threads started from it
(Starlette's `run_in_threadpool` copies the context). A web request carries `request` (an id,
also sent back as `X-Request-ID`); the worker's command attempts carry `command`, `meter`,
`unit`; a poll round its `gateway`; a refused notification its `order`; the notify desk's one
line per batch (`notifications handled: credited 24, duplicate 1`) its `orders` by outcome;
`extra={…}` on a call adds keys to that line alone.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, merge_contextvars

__all__ = ["bind", "bound", "configure", "RequestIds"]

bind = bind_contextvars
bound = bound_contextvars
FORMATS = ("auto", "json", "console")


def _rename(_, __, event: dict) -> dict:
    event["at"] = event.pop("timestamp", None)
    return event


def configure(fmt: str | None = None, level: int = logging.INFO) -> str:
    """Route every log record through structlog; returns the format chosen ("json" or
    "console"). `fmt`: "json", "console" or "auto" (JSON unless stderr is a terminal); by default
    FEIKONG_LOG_FORMAT, else "auto"."""
    fmt = (fmt or os.environ.get("FEIKONG_LOG_FORMAT") or "auto").lower()
    if fmt not in FORMATS:
        raise ValueError(f"FEIKONG_LOG_FORMAT must be one of {', '.join(FORMATS)}: {fmt!r}")
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    shared = [
        merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _rename,
    ]
    renderer = (structlog.processors.JSONRenderer(ensure_ascii=False) if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=False, timestamp_key="at"))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer])
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Tencent Cloud's SDK logs whole requests at DEBUG: an SMS code's text among them
    logging.getLogger("tencentcloud_sdk_common").setLevel(logging.INFO)
    structlog.configure(
        processors=[*(p for p in shared if not isinstance(p, structlog.stdlib.ExtraAdder)),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True)
    return fmt


class RequestIds:
    """ASGI middleware: each HTTP request gets an id (a proxy's `X-Request-ID` when it sends a
    sane one), bound for every line logged while serving it and sent back as `X-Request-ID`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        for name, value in scope.get("headers") or ():
            if name == b"x-request-id":
                rid = value.decode("latin-1")
                break
        if not (0 < len(rid) <= 64 and rid.replace("-", "").isalnum()):
            rid = secrets.token_hex(8)
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        with bound_contextvars(request=rid):
            await self.app(scope, receive, send_with_id)


def binding(key: str, argument: str):
    """Decorator: every line logged during a call carries the call's `argument` as `key`
    (`@binding("order", "out_trade_no")`)."""
    import functools
    import inspect

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            value = signature.bind_partial(*args, **kwargs).arguments.get(argument)
            with bound_contextvars(**{key: value}):
                return fn(*args, **kwargs)
        return wrapper
    return decorate
