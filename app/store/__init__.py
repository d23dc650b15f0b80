"""Tenant stores: `MemoryStore` (embedded default) and `RedisStore` (production)."""

from redis import Redis

from app.store.base import StoredModel, StoreUnavailable, TenantStore, VersionInfo
from app.store.memory import MemoryStore
from app.store.redis import RedisStore, connect, redis_errors

__all__ = [
    "MemoryStore",
    "RedisStore",
    "StoreUnavailable",
    "StoredModel",
    "TenantStore",
    "VersionInfo",
    "build_store",
    "connect",
    "redis_errors",
]


def build_store(
    kind: str,
    *,
    redis_url: str,
    prefix: str,
    ttl_s: int | None,
    timeout_s: float,
    keep_versions: int = 5,
    client: Redis | None = None,
) -> TenantStore:
    """The store named by settings (`client`: a shared Redis connection pool)."""
    if kind == "redis":
        return RedisStore(
            redis_url, prefix=prefix, ttl_s=ttl_s, timeout_s=timeout_s, keep_versions=keep_versions, client=client
        )
    return MemoryStore(ttl_s=ttl_s, keep_versions=keep_versions)
