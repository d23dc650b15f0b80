"""`AccessGuard`: who is calling (API key -> `Principal`) and how often; plain Python, handed a Redis client."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from app.access.keys import ApiKey, KeyStore, MemoryKeyStore, RedisKeyStore, digest, make_record
from app.access.ratelimit import Decision, MemoryRateLimiter, RateLimiter, RedisRateLimiter
from app.store import RedisClient


@dataclass(frozen=True)
class Principal:
    """The caller: an admin, or a key scoped to a set of tenants."""

    key_id: str
    admin: bool
    tenants: frozenset[str] = frozenset()

    def allows(self, tenant_id: str) -> bool:
        return self.admin or tenant_id in self.tenants

    @classmethod
    def of(cls, record: ApiKey) -> Principal:
        return cls(key_id=record.key_id, admin=record.admin, tenants=frozenset(record.tenants))


ANONYMOUS = Principal(key_id="anonymous", admin=True)
"""The caller when auth is disabled (embedded mode): everything is allowed."""

BOOTSTRAP_ADMIN_ID = "bootstrap-admin"


class AccessGuard:
    """Key store + rate limiter + the bootstrap admin key digest. No I/O until first used."""

    def __init__(
        self, enabled: bool, keys: KeyStore, limiter: RateLimiter | None = None, admin_digest: str | None = None
    ) -> None:
        self.enabled = enabled
        self.keys = keys
        self.limiter = limiter
        self._admin_digest = admin_digest.strip().lower() if admin_digest else None

    @property
    def has_bootstrap_admin(self) -> bool:
        return self._admin_digest is not None

    def authenticate(self, key: str) -> Principal | None:
        """The principal behind `key`, or None for an unknown (or revoked) key."""
        key_digest = digest(key)
        if self._admin_digest is not None and hmac.compare_digest(key_digest, self._admin_digest):
            return Principal(key_id=BOOTSTRAP_ADMIN_ID, admin=True)
        record = self.keys.lookup(key_digest)
        return None if record is None else Principal.of(record)

    def create_key(self, name: str, admin: bool, tenants: list[str]) -> tuple[str, ApiKey]:
        key, record = make_record(name, admin, tenants)
        self.keys.add(digest(key), record)
        return key, record

    def hit(self, identity: str) -> Decision | None:
        return None if self.limiter is None else self.limiter.hit(identity)


def build_guard(
    enabled: bool,
    client: RedisClient | None,
    prefix: str,
    rate_limit: tuple[int, int],
    admin_digest: str | None = None,
) -> AccessGuard:
    """Keys and rate limits in Redis when `client` is given (shared by every replica), else in memory.

    `rate_limit`: (requests per window, window seconds); 0 requests disables it."""
    requests, window_s = rate_limit
    keys: KeyStore = RedisKeyStore(client, prefix) if client is not None else MemoryKeyStore()
    limiter: RateLimiter | None = None
    if requests > 0:
        limiter = (
            RedisRateLimiter(client, prefix, requests, window_s)
            if client is not None
            else MemoryRateLimiter(requests, window_s)
        )
    return AccessGuard(enabled, keys, limiter, admin_digest)
