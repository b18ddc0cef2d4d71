"""/readyz: the database and its schema, a worker's heartbeat, the order and billing jobs' last
sweeps, and the holiday calendar's warning; 503 with each thing broken in turn."""

import datetime as dt

import pytest
import sqlalchemy as sa

from app.db import transaction, utcnow
from app.estate.models import WorkerHeartbeat
from app.jobs.runs import BILLING_JOBS, ORDER_JOBS, record_run
from app.messages.jobs import MESSAGE_JOBS
from tests.factories import EstateFactory, REAL_POLICY


def alive(engine, *, worker_age_s: float = 1, order_age_s: float = 1,
          billing_age_s: float = 1, message_age_s: float = 1,
          order_error: Exception | None = None) -> None:
    """A worker's heartbeat and the jobs' last sweeps, that many seconds ago."""
    now = utcnow()
    with transaction(engine) as s:
        s.merge(WorkerHeartbeat(worker_id="w1", seen_at=now - dt.timedelta(seconds=worker_age_s)))
    record_run(engine, ORDER_JOBS, order_error, now=now - dt.timedelta(seconds=order_age_s))
    record_run(engine, BILLING_JOBS, now=now - dt.timedelta(seconds=billing_age_s))
    record_run(engine, MESSAGE_JOBS, now=now - dt.timedelta(seconds=message_age_s))


def test_ready_with_the_schema_at_head_and_the_calendar_reported(client, engine):
    EstateFactory(engine, **REAL_POLICY)  # an estate on the Chinese calendar
    alive(engine)
    reply = client.get("/readyz")
    body = reply.json()
    assert reply.status_code == 200 and body["ready"] is True
    assert body["checks"]["migrations"]["at"] == body["checks"]["migrations"]["head"]
    calendar = body["checks"]["holiday_calendar"]
    assert calendar["official_until"] >= "2026-12-31" and calendar["ok"] is True
    # Today is within 60 days of 2026-12-31, or past it: the warning says what to load.
    assert "feikong holidays load" in calendar["warning"]


def test_not_ready_when_the_schema_is_behind(client, engine):
    with transaction(engine) as s:
        s.execute(sa.text("UPDATE alembic_version SET version_num = '0007'"))
    reply = client.get("/readyz")
    assert reply.status_code == 503
    assert reply.json()["checks"]["migrations"] == {"ok": False, "at": "0007",
                                                    "head": reply.json()["checks"]["migrations"]["head"]}


@pytest.mark.parametrize("broken, check", [
    ({"worker_age_s": 600}, "worker"),  # the worker died: nobody reads meters
    ({"order_age_s": 3600}, ORDER_JOBS),  # the jobs' process died
    ({"billing_age_s": 7200}, BILLING_JOBS),
    ({"message_age_s": 300}, MESSAGE_JOBS),  # no restore confirmation would go out
    ({"order_error": RuntimeError("provider down")}, ORDER_JOBS),
])
def test_not_ready_with_each_part_broken(client, engine, broken, check):
    alive(engine, **broken)
    reply = client.get("/readyz")
    assert reply.status_code == 503
    checks = reply.json()["checks"]
    assert [name for name, c in checks.items() if not c["ok"]] == [check]
    assert checks[check]["age_s"] is not None


def test_not_ready_before_any_worker_or_job_ran(client):
    checks = client.get("/readyz").json()["checks"]
    assert not checks["worker"]["ok"] and checks["worker"]["age_s"] is None
    assert not checks[ORDER_JOBS]["ok"] and not checks[BILLING_JOBS]["ok"]
    assert not checks[MESSAGE_JOBS]["ok"]


def test_a_running_worker_makes_its_heartbeat_on_sqlite_too(stack, engine):
    """`feikong run` and the demo (SQLite, one worker) showed no heartbeat: /readyz said the
    worker was missing while it polled."""
    from tests.conftest import wait_until

    stack.start_sim([[1]])
    stack.household(1, balance_fen=1000)
    stack.start_worker()
    wait_until(lambda: _beat(engine) is not None, timeout=10,
               message="the worker wrote no heartbeat")


def _beat(engine):
    with transaction(engine, read_only=True) as s:
        return s.execute(sa.select(sa.func.max(WorkerHeartbeat.seen_at))).scalar()
