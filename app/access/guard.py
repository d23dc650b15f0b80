"""`AccessGuard`: who is calling (API key -> `Principal`) and how often; built from settings."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import redis

from app.access.keys import ApiKey, KeyStore, MemoryKeyStore, RedisKeyStore, digest, make_record
from app.access.ratelimit import Decision, MemoryRateLimiter, RateLimiter, RedisRateLimiter
from app.config import Settings


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

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth_enabled
        self._client: redis.Redis | None = None
        if settings.store == "redis":
            self._client = redis.Redis.from_url(
                settings.redis_url,
                socket_timeout=settings.redis_timeout_s,
                socket_connect_timeout=settings.redis_timeout_s,
                health_check_interval=15,
            )
            self.keys: KeyStore = RedisKeyStore(self._client, settings.redis_prefix)
        else:
            self.keys = MemoryKeyStore()
        self.limiter: RateLimiter | None = None
        if settings.rate_limit_requests > 0:
            self.limiter = (
                RedisRateLimiter(
                    self._client, settings.redis_prefix, settings.rate_limit_requests, settings.rate_limit_window_s
                )
                if self._client is not None
                else MemoryRateLimiter(settings.rate_limit_requests, settings.rate_limit_window_s)
            )
        self._admin_digest = self._bootstrap_digest(settings)

    @staticmethod
    def _bootstrap_digest(settings: Settings) -> str | None:
        if settings.admin_key_sha256:
            return settings.admin_key_sha256.strip().lower()
        if settings.admin_key is not None and settings.admin_key.get_secret_value():
            return digest(settings.admin_key.get_secret_value())
        return None

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

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
