"""The audit log: one `AuditEntry` per act, in the act's own transaction."""

from __future__ import annotations

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
