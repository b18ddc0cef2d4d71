"""Waking the worker the moment a command row is committed.

`request_wake(session, gateway_id)` inside the transaction that queues a command. After that
transaction commits: listeners in this process are called at once (the worker sets its
gateway's asyncio event), and on PostgreSQL a `NOTIFY feikong_command` carries the gateway id to
workers in other processes. A rolled-back transaction wakes nobody. The worker's periodic sweep
is only the safety net.
"""

from __future__ import annotations

import logging
from typing import Callable

from sqlalchemy import event, text
from sqlmodel import Session

CHANNEL = "feikong_command"
log = logging.getLogger(__name__)

_listeners: list[Callable[[int], None]] = []


def subscribe(listener: Callable[[int], None]) -> None:
    _listeners.append(listener)


def unsubscribe(listener: Callable[[int], None]) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def request_wake(session: Session, gateway_id: int) -> None:
    session.info.setdefault("wake_gateways", set()).add(gateway_id)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, :payload)"),
                        {"channel": CHANNEL, "payload": str(gateway_id)})


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for gateway_id in session.info.pop("wake_gateways", ()):
        for listener in list(_listeners):
            try:
                listener(gateway_id)
            except Exception:  # a listener must never fail the committer
                log.exception("wake listener failed")


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop("wake_gateways", None)
