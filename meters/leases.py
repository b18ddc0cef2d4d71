"""Which worker polls which gateway: a row lease on `gateway` (leased_by, lease_expires_at).

Each worker renews its leases every `ttl / 3` seconds (and its row in `worker_heartbeat`) and
claims gateways whose lease is free or expired, up to its fair share (all gateways ÷ workers
seen within `ttl`, rounded up); a worker holding
more than its share lets the excess go, so a worker that starts later gets its part within one
renewal. Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two workers never take the same
row; a dead worker's gateways are taken over once its leases expire: within `ttl + ttl / 3`
seconds. On SQLite there is one worker (the CLI enforces it with a file lock), so it takes
every gateway at once, even those a killed predecessor still seems to hold.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import socket
import uuid

from sqlalchemy import delete, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import select

from app.db import transaction, utcnow
from app.estate.models import Gateway, WorkerHeartbeat


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def renew_leases(engine: Engine, worker_id: str, ttl_s: float,
                 now: dt.datetime | None = None) -> set[int]:
    """Renew, rebalance and claim; returns the ids of the gateways this worker holds now."""
    now = now or utcnow()
    until = now + dt.timedelta(seconds=ttl_s)
    live = (Gateway.lease_expires_at.is_not(None)) & (Gateway.lease_expires_at > now)
    with transaction(engine) as s:
        beat = s.get(WorkerHeartbeat, worker_id)  # /readyz reads it: a worker is alive
        s.add(WorkerHeartbeat(worker_id=worker_id, seen_at=now) if beat is None else beat)
        if beat is not None:
            beat.seen_at = now
        stale = now - dt.timedelta(seconds=ttl_s)
        s.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.seen_at < stale))
        if engine.dialect.name == "sqlite":  # one worker: every gateway is its
            s.execute(update(Gateway).values(leased_by=worker_id, lease_expires_at=until))
            return set(s.exec(select(Gateway.id)).all())
        s.flush()
        workers = len(s.exec(select(WorkerHeartbeat.worker_id)).all())
        total = len(s.exec(select(Gateway.id)).all())
        share = math.ceil(total / workers) if total else 0
        mine = list(s.exec(select(Gateway.id).where(Gateway.leased_by == worker_id, live)
                           .order_by(Gateway.id).with_for_update(skip_locked=True)).all())
        keep, release = mine[:share], mine[share:]
        if release:
            s.execute(update(Gateway).where(Gateway.id.in_(release))
                      .values(leased_by=None, lease_expires_at=None))
        wanted = share - len(keep)
        if wanted > 0:
            free = s.exec(select(Gateway.id).where(or_(Gateway.leased_by.is_(None), ~live))
                          .order_by(Gateway.id).limit(wanted)
                          .with_for_update(skip_locked=True)).all()
            keep += list(free)
        if keep:
            s.execute(update(Gateway).where(Gateway.id.in_(keep))
                      .values(leased_by=worker_id, lease_expires_at=until))
        return set(keep)


def release_leases(engine: Engine, worker_id: str) -> None:
    with transaction(engine) as s:
        s.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.worker_id == worker_id))
        s.execute(update(Gateway).where(Gateway.leased_by == worker_id)
                  .values(leased_by=None, lease_expires_at=None))
