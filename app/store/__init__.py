"""Tenant stores: `MemoryStore` (embedded default) and `RedisStore` (production)."""

from app.store.base import StoredModel, StoreUnavailable, TenantStore, VersionInfo
from app.store.memory import MemoryStore
from app.store.redis import RedisStore

__all__ = ["MemoryStore", "RedisStore", "StoreUnavailable", "StoredModel", "TenantStore", "VersionInfo", "build_store"]


def build_store(
    kind: str, *, redis_url: str, prefix: str, ttl_s: int | None, timeout_s: float, keep_versions: int = 5
) -> TenantStore:
    """The store named by settings."""
    if kind == "redis":
        return RedisStore(redis_url, prefix=prefix, ttl_s=ttl_s, timeout_s=timeout_s, keep_versions=keep_versions)
    return MemoryStore(ttl_s=ttl_s, keep_versions=keep_versions)
