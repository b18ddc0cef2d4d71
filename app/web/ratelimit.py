"""Rate limits that hold across processes, and the client's address they are counted by.

- `DatabaseStorage`: the `limits` library's storage interface (its fixed-window counters) on our
  database, one row per key in `rate_counter`, moved by one upsert, so every `serve --processes`
  child and every separate server on the same database counts the same. `limits`' own storages
  (memory, Redis, Memcached, MongoDB) are per process or need a server this deployment does not
  have. Used by the console's login limit and the residents' code, binding and look-up limits.
- `client_address`: the peer's address, or, when the peer is one of the trusted proxies
  (FEIKONG_TRUSTED_PROXIES, addresses or networks; default none), the right-most address of
  X-Forwarded-For that is not itself a trusted proxy. Without a trusted proxy, X-Forwarded-For
  is never believed: anyone can write it.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import time

import sqlalchemy as sa
from limits import RateLimitItem
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from starlette.requests import HTTPConnection

from app.console.models import RateCounter
from app.db import transaction

PURGE_EVERY = 500  # increments per process between two deletions of expired counters
_increments = itertools.count(1)  # this process's, over every storage instance


class DatabaseStorage(Storage):
    """`limits`' storage interface (fixed windows) on our database: one row per key
    (`rate_counter`), moved by one upsert, so every process counts the same. A window starts at
    its key's first hit (`expires_at` = that time + the window) and its count restarts after it.
    Expired rows are deleted now and then (every `PURGE_EVERY` increments of a process)."""

    STORAGE_SCHEME = ["feikong-db"]

    def __init__(self, engine) -> None:
        super().__init__()
        self.engine = engine

    @property
    def base_exceptions(self):
        return sa.exc.SQLAlchemyError

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        table = RateCounter.__table__
        insert = (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(table)
        expired = table.c.expires_at <= now
        statement = insert.values(key=key, count=amount, expires_at=now + expiry) \
            .on_conflict_do_update(index_elements=["key"], set_={
                "count": sa.case((expired, amount), else_=table.c.count + amount),
                "expires_at": sa.case((expired, now + expiry), else_=table.c.expires_at)}) \
            .returning(table.c.count)
        with transaction(self.engine) as s:
            count = int(s.execute(statement).scalar())
        if next(_increments) % PURGE_EVERY == 0:
            self.purge_expired(now)
        return count

    def get(self, key: str) -> int:
        with transaction(self.engine, read_only=True) as s:
            row = s.get(RateCounter, key)
        return row.count if row is not None and row.expires_at > time.time() else 0

    def get_expiry(self, key: str) -> float:
        with transaction(self.engine, read_only=True) as s:
            row = s.get(RateCounter, key)
        return row.expires_at if row is not None else time.time()

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with transaction(self.engine) as s:
            return s.execute(sa.delete(RateCounter)).rowcount

    def clear(self, key: str) -> None:
        with transaction(self.engine) as s:
            s.execute(sa.delete(RateCounter).where(RateCounter.key == key))

    def purge_expired(self, now: float | None = None) -> int:
        """Delete the counters whose window has ended (they count 0 anyway); returns how many."""
        with transaction(self.engine) as s:
            return s.execute(sa.delete(RateCounter).where(
                RateCounter.expires_at <= (time.time() if now is None else now))).rowcount


Rule = tuple[RateLimitItem, str, str]  # (the limit, what is counted, whose: a phone, an address…)


class Limits:
    """Several limits checked or counted together, e.g. a code sent: per phone, per openid and
    per client address. A rule whose key is empty (no openid, say) is left out. Each call
    answers None (within every limit) or the seconds until the tightest spent one frees up."""

    def __init__(self, engine) -> None:
        self.limiter = FixedWindowRateLimiter(DatabaseStorage(engine))

    def _retry_after(self, spent: list[Rule]) -> float | None:
        if not spent:
            return None
        now = time.time()
        return max(1.0, max(self.limiter.get_window_stats(item, name, key).reset_time - now
                            for item, name, key in spent))

    def spent(self, rules: list[Rule]) -> float | None:
        """Whether any limit is spent already, counting nothing."""
        live = [r for r in rules if r[2]]
        return self._retry_after([r for r in live if not self.limiter.test(*r)])

    def hit(self, rules: list[Rule]) -> float | None:
        """Count one against every limit (atomically each); None when all still hold."""
        live = [r for r in rules if r[2]]
        return self._retry_after([r for r in live if not self.limiter.hit(*r)])

    def seen(self, item: RateLimitItem, name: str, key: str) -> bool:
        """Whether `key` was counted under `name` in its current window (nothing counted)."""
        return not self.limiter.test(item, name, key)


# --- the client's address -------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """"10.0.0.1, 192.168.0.0/24" → the networks (a bare address is a /32 or /128). ValueError
    for anything that is not an address or network."""
    networks = []
    for item in text.split(","):
        item = item.strip()
        if item:
            networks.append(ipaddress.ip_network(item, strict=False))
    return tuple(networks)


def _in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(connection: HTTPConnection, trusted: tuple[Network, ...]) -> str:
    """The client's address for rate limits and records: the TCP peer, unless the peer is a
    trusted proxy; then the right-most X-Forwarded-For entry that is not a trusted proxy (the
    entries left of it were written by whoever sent the request and prove nothing)."""
    peer = connection.client.host if connection.client else ""
    if not trusted or not _in(peer, trusted):
        return peer
    forwarded = ",".join(connection.headers.getlist("x-forwarded-for"))
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop[:64]
    return hops[0][:64] if hops else peer


@functools.lru_cache(maxsize=8)
def _trusted(text: str) -> tuple[Network, ...]:
    return parse_networks(text)


def request_client(connection: HTTPConnection) -> str:
    """`client_address` with the app's FEIKONG_TRUSTED_PROXIES."""
    return client_address(connection, _trusted(connection.app.state.settings.trusted_proxies))
