"""In-process store: the embedded default (one process, nothing persisted)."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from itertools import islice

from app.store.base import JSON, NO_MODEL, PoolUpdate, StoredModel, VersionInfo


@dataclass
class _Snapshot:
    model: StoredModel
    support: list[JSON]


@dataclass
class _Tenant:
    history: list[_Snapshot] = field(default_factory=list)  # newest first; [0] is current
    expires_at: float | None = None
    unlabeled: dict[str, None] = field(default_factory=dict)  # keys by arrival, oldest first


class MemoryStore:
    """Dicts behind a lock, with the same semantics as `RedisStore`."""

    in_process = True

    def __init__(self, ttl_s: int | None = None, keep_versions: int = 5) -> None:
        self._ttl_s = ttl_s
        self._keep_versions = max(1, keep_versions)
        self._tenants: dict[str, _Tenant] = {}
        self._sequences: dict[str, int] = {}
        self._lock = threading.Lock()

    def _live(self, tenant_id: str) -> _Tenant | None:
        tenant = self._tenants.get(tenant_id)
        if tenant is not None and tenant.expires_at is not None and tenant.expires_at <= time.monotonic():
            del self._tenants[tenant_id]
            return None
        return tenant

    def _snapshot(self, tenant_id: str, version: int | None) -> _Snapshot | None:
        tenant = self._live(tenant_id)
        if tenant is None:
            return None
        if version is None:
            return tenant.history[0]
        return next((snap for snap in tenant.history if snap.model.version == version), None)

    def _publish(self, tenant_id: str, head: bytes, meta: JSON, support: list[JSON]) -> int:
        version = self._sequences.get(tenant_id, 0) + 1
        self._sequences[tenant_id] = version
        tenant = self._live(tenant_id) or _Tenant()
        snapshot = _Snapshot(StoredModel(version, bytes(head), copy.deepcopy(meta)), copy.deepcopy(support))
        tenant.history = [snapshot, *tenant.history][: self._keep_versions]
        tenant.expires_at = time.monotonic() + self._ttl_s if self._ttl_s else None
        self._tenants[tenant_id] = tenant
        return version

    def save(
        self,
        tenant_id: str,
        head: bytes,
        meta: JSON,
        support: list[JSON],
        expected_version: int | None = None,
    ) -> int | None:
        with self._lock:
            if expected_version is not None:
                current = self._snapshot(tenant_id, None)
                if (NO_MODEL if current is None else current.model.version) != expected_version:
                    return None
            return self._publish(tenant_id, head, meta, support)

    def rollback(self, tenant_id: str, version: int) -> int | None:
        with self._lock:
            source = self._snapshot(tenant_id, version)
            if source is None:
                return None
            return self._publish(tenant_id, source.model.head, source.model.meta, source.support)

    def load(self, tenant_id: str, version: int | None = None) -> StoredModel | None:
        with self._lock:
            snap = self._snapshot(tenant_id, version)
            if snap is None:
                return None
            return StoredModel(snap.model.version, snap.model.head, copy.deepcopy(snap.model.meta))

    def current_version(self, tenant_id: str) -> int | None:
        with self._lock:
            snap = self._snapshot(tenant_id, None)
            return None if snap is None else snap.model.version

    def load_support(self, tenant_id: str, version: int | None = None) -> list[JSON] | None:
        with self._lock:
            snap = self._snapshot(tenant_id, version)
            return None if snap is None else copy.deepcopy(snap.support)

    def versions(self, tenant_id: str) -> list[VersionInfo]:
        with self._lock:
            tenant = self._live(tenant_id)
            if tenant is None:
                return []
            return [
                VersionInfo(snap.model.version, len(snap.model.head), copy.deepcopy(snap.model.meta))
                for snap in tenant.history
            ]

    def delete(self, tenant_id: str) -> bool:
        with self._lock:
            return self._tenants.pop(tenant_id, None) is not None

    def add_unlabeled(self, tenant_id: str, texts: list[str], max_texts: int) -> PoolUpdate | None:
        with self._lock:
            tenant = self._live(tenant_id)
            if tenant is None:
                return None
            pool = tenant.unlabeled
            repeated = 0
            for text in texts:
                repeated += text in pool
                pool.pop(text, None)
                pool[text] = None  # (re)inserted: the newest
            dropped = max(0, len(pool) - max(0, max_texts))
            for text in list(islice(pool, dropped)):
                del pool[text]
            return PoolUpdate(added=len(texts) - repeated, repeated=repeated, dropped=dropped, size=len(pool))

    def unlabeled(self, tenant_id: str, limit: int | None = None) -> list[str]:
        with self._lock:
            tenant = self._live(tenant_id)
            if tenant is None:
                return []
            return list(islice(reversed(tenant.unlabeled), None if limit is None else max(0, limit)))

    def unlabeled_size(self, tenant_id: str) -> int:
        with self._lock:
            tenant = self._live(tenant_id)
            return 0 if tenant is None else len(tenant.unlabeled)

    def clear_unlabeled(self, tenant_id: str) -> int:
        with self._lock:
            tenant = self._live(tenant_id)
            if tenant is None:
                return 0
            held = len(tenant.unlabeled)
            tenant.unlabeled.clear()
            return held

    def tenant_ids(self) -> list[str]:
        """Every tenant with a live model (used by `GET /tenants`)."""
        with self._lock:
            return [tenant_id for tenant_id in list(self._tenants) if self._live(tenant_id) is not None]

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None
