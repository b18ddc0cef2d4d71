"""Who may use the property managers' console, their sessions, what they did, and the counters
that rate-limit logging in."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow
from app.i18n import N_

# Roles.
ESTATE_ADMIN = "estate_admin"  # everything in their estate, managers and settings included
BUILDING_MANAGER = "building_manager"  # their buildings only
FINANCE = "finance"  # payments, refunds, reconciliation, reports; read-only elsewhere
ROLES = (ESTATE_ADMIN, BUILDING_MANAGER, FINANCE)
ROLE_ZH = {ESTATE_ADMIN: N_("小区管理员"), BUILDING_MANAGER: N_("楼栋经理"), FINANCE: N_("财务")}


class Manager(SQLModel, table=True):
    """A console user of one estate. A building manager sees the buildings of its
    `ManagerBuilding` rows only. `password_hash` is argon2id (argon2-cffi). A disabled manager
    (`disabled_at`) can no longer log in, and its sessions stop at their next request."""

    __tablename__ = "manager"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    role: str
    estate_id: int = Field(foreign_key="estate.id", index=True)
    password_hash: str
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    disabled_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class ManagerBuilding(SQLModel, table=True):
    """A building a building manager manages."""

    __tablename__ = "manager_building"

    manager_id: int = Field(foreign_key="manager.id", primary_key=True)
    building_id: int = Field(foreign_key="building.id", primary_key=True)


class ManagerSession(SQLModel, table=True):
    """A logged-in browser. The cookie carries a random token; only its SHA-256 is kept here,
    so the table leaks no session. Ends at logout, revocation, idle expiry or the manager's
    being disabled."""

    __tablename__ = "manager_session"

    token_sha256: str = Field(primary_key=True)
    manager_id: int = Field(foreign_key="manager.id", index=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    client: str = ""  # the address it logged in from


class AuditEntry(SQLModel, table=True):
    """Who did what to which object, when, from where, with before → after and why. Written in
    the same transaction as the act; never updated or deleted (a trigger refuses both)."""

    __tablename__ = "audit_entry"
    __table_args__ = (sa.Index("ix_audit_entry_estate_id_at", "estate_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    estate_id: int | None = Field(default=None, foreign_key="estate.id")
    manager_id: int | None = Field(default=None, foreign_key="manager.id")
    manager_name: str = ""  # "feikong" for the command line
    client: str = ""
    action: str
    object_type: str = ""
    object_id: str = ""
    before: str = ""
    after: str = ""
    reason: str = ""


class RateCounter(SQLModel, table=True):
    """A fixed-window counter of the `limits` library, kept in the database so that every web
    process sees the same count (app/web/ratelimit.py: DatabaseStorage)."""

    __tablename__ = "rate_counter"

    key: str = Field(primary_key=True)
    count: int = 0
    expires_at: float = Field(sa_type=sa.Float)  # epoch seconds, as `limits` counts time
