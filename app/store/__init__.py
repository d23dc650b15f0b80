"""Tenant stores: `MemoryStore` (embedded default) and `RedisStore` (production: one server or a cluster)."""

from app.store.base import PoolUpdate, StoredModel, StoreUnavailable, TenantStore, VersionInfo
from app.store.client import RedisClient, connect, is_cluster_url, redis_errors
from app.store.memory import MemoryStore
from app.store.redis import RedisStore

__all__ = [
    "MemoryStore",
    "PoolUpdate",
    "RedisClient",
    "RedisStore",
    "StoreUnavailable",
    "StoredModel",
    "TenantStore",
    "VersionInfo",
    "build_store",
    "connect",
    "is_cluster_url",
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
    client: RedisClient | None = None,
    wait_replicas: int = 0,
    wait_timeout_ms: int = 1000,
) -> TenantStore:
    """The store named by settings (`client`: the process's shared Redis client)."""
    if kind == "redis":
        return RedisStore(
            redis_url,
            prefix=prefix,
            ttl_s=ttl_s,
            timeout_s=timeout_s,
            keep_versions=keep_versions,
            client=client,
            wait_replicas=wait_replicas,
            wait_timeout_ms=wait_timeout_ms,
        )
    return MemoryStore(ttl_s=ttl_s, keep_versions=keep_versions)
