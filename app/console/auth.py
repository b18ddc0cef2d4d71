"""Logging in to the console: passwords (argon2id, argon2-cffi), sessions kept in the database
(revocable: log out everywhere; a disabled manager's stop at the next request; idle expiry),
and the login rate limit (the `limits` library, its fixed-window counters kept in the database
so that every `serve --processes` child sees the same count).

Compared before choosing: Starlette's SessionMiddleware (a signed cookie holding the session)
cannot be revoked or expired server-side, which the console must; `limits`' own storages
(memory, Redis, Memcached, MongoDB) are per process or need a server this deployment does not
have, so `DatabaseStorage` (app/web/ratelimit.py, shared with the residents' limits) implements
its storage interface on our database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from limits import parse
from limits.strategies import FixedWindowRateLimiter
from sqlmodel import Session, select

from app.console.models import BUILDING_MANAGER, Manager, ManagerBuilding, ManagerSession
from app.db import transaction, utcnow
from app.web.ratelimit import DatabaseStorage

COOKIE = "feikong_manage"
SEEN_EVERY = dt.timedelta(minutes=1)  # last_seen_at is written at most this often
# Failed logins: per manager name, and per client address (one address may try many names).
PER_NAME = parse("5 per 15 minutes")
PER_CLIENT = parse("20 per 15 minutes")
MIN_PASSWORD_CHARS = 10

_hasher = PasswordHasher()  # argon2id, the library's recommended parameters


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"密码至少 {MIN_PASSWORD_CHARS} 个字符")
    return _hasher.hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = _hasher.hash("an unknown manager takes as long as a known one")


@dataclass(frozen=True)
class Who:
    """The manager behind a request, and what they may see (app/console/scope.py)."""

    manager_id: int
    name: str
    role: str
    estate_id: int
    building_ids: frozenset[int] | None  # None: every building of the estate
    token_sha256: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_login(session: Session, name: str, password: str) -> Manager | None:
    """The enabled manager with this name and password, or None (the same time either way)."""
    manager = session.exec(select(Manager).where(Manager.name == name)).first()
    if manager is None:
        password_matches(_DUMMY_HASH, password)
        return None
    if not password_matches(manager.password_hash, password) or manager.disabled_at is not None:
        return None
    return manager


def open_session(session: Session, manager: Manager, client: str) -> str:
    """A new session for `manager`; returns the token for the cookie (kept only hashed)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(ManagerSession(token_sha256=_digest(token), manager_id=manager.id,
                               created_at=now, last_seen_at=now, client=client[:100]))
    return token


def who_is(engine, token: str | None, idle: dt.timedelta) -> Who | None:
    """The manager of a live session (not revoked, not idle past `idle`, manager enabled), or
    None; moves the session's last-seen time."""
    if not token:
        return None
    digest, now = _digest(token), utcnow()
    with transaction(engine, read_only=True) as s:
        row = s.exec(select(ManagerSession, Manager)
                     .join(Manager, Manager.id == ManagerSession.manager_id)
                     .where(ManagerSession.token_sha256 == digest)).first()
        if row is None:
            return None
        live, manager = row
        if (live.revoked_at is not None or manager.disabled_at is not None
                or live.last_seen_at < now - idle):
            return None
        buildings = frozenset(s.exec(select(ManagerBuilding.building_id)
                                     .where(ManagerBuilding.manager_id == manager.id)))
    if now - live.last_seen_at >= SEEN_EVERY:
        with transaction(engine) as s:
            s.execute(sa.update(ManagerSession).where(ManagerSession.token_sha256 == digest)
                      .values(last_seen_at=now))
    return Who(manager.id, manager.name, manager.role, manager.estate_id,
               buildings if manager.role == BUILDING_MANAGER else None, digest)


def revoke(session: Session, *, token_sha256: str | None = None,
           manager_id: int | None = None) -> int:
    """End one session, or every session of a manager (log out everywhere); returns how many."""
    q = sa.update(ManagerSession).where(ManagerSession.revoked_at.is_(None))
    if token_sha256 is not None:
        q = q.where(ManagerSession.token_sha256 == token_sha256)
    if manager_id is not None:
        q = q.where(ManagerSession.manager_id == manager_id)
    return session.execute(q.values(revoked_at=utcnow())).rowcount


# --- the login rate limit ------------------------------------------------------------------------

class LoginLimiter:
    """Failed logins counted per name and per client address; a login is refused, unchecked,
    once either is spent."""

    def __init__(self, engine) -> None:
        self.limiter = FixedWindowRateLimiter(DatabaseStorage(engine))

    def allowed(self, name: str, client: str) -> bool:
        return (self.limiter.test(PER_NAME, "login-name", name.lower())
                and self.limiter.test(PER_CLIENT, "login-client", client))

    def failed(self, name: str, client: str) -> None:
        self.limiter.hit(PER_NAME, "login-name", name.lower())
        self.limiter.hit(PER_CLIENT, "login-client", client)
