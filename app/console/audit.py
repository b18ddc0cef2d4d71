"""The audit log: one `AuditEntry` per act, in the act's own transaction."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session

from app.console.auth import Who
from app.console.models import AuditEntry
from app.db import utcnow

CLI = "feikong"  # the name recorded for acts from the command line


def record(session: Session, who: Who | None, action: str, *, estate_id: int | None = None,
           object_type: str = "", object_id: str | int = "", before: str = "",
           after: str = "", reason: str = "", client: str = "") -> AuditEntry:
    entry = AuditEntry(at=utcnow(), estate_id=who.estate_id if who else estate_id,
                       manager_id=who.manager_id if who else None,
                       manager_name=who.name if who else CLI, client=client[:100],
                       action=action, object_type=object_type, object_id=str(object_id)[:64],
                       before=before[:1000], after=after[:1000], reason=reason[:500])
    session.add(entry)
    return entry


def record_many(session: Session, who: Who | None, acts: list[dict], *,
                estate_id: int | None = None, client: str = "") -> None:
    """`record` for many acts at once, in one INSERT (an import's thousands of rows): each act
    a dict of action, object_type, object_id, before, after, reason."""
    if not acts:
        return
    now = utcnow()
    session.execute(sa.insert(AuditEntry.__table__), [dict(
        at=now, estate_id=who.estate_id if who else estate_id,
        manager_id=who.manager_id if who else None, manager_name=who.name if who else CLI,
        client=client[:100], action=act["action"], object_type=act.get("object_type", ""),
        object_id=str(act.get("object_id", ""))[:64], before=act.get("before", "")[:1000],
        after=act.get("after", "")[:1000], reason=act.get("reason", "")[:500])
        for act in acts])
