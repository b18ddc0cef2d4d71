"""/readyz: the database and its schema, and the holiday calendar's warning."""

import sqlalchemy as sa

from app.db import transaction
from tests.factories import EstateFactory, REAL_POLICY


def test_ready_with_the_schema_at_head_and_the_calendar_reported(client, engine):
    EstateFactory(engine, **REAL_POLICY)  # an estate on the Chinese calendar
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
