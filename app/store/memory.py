"""In-process store: the embedded default (one process, nothing persisted)."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass

from app.store.base import JSON, StoredModel


@dataclass
class _Entry:
    model: StoredModel
    support: list[JSON]
    expires_at: float | None


class MemoryStore:
    """A dict behind a lock, with the same semantics as `RedisStore`."""

    def __init__(self, ttl_s: int | None = None) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[str, _Entry] = {}
        self._sequences: dict[str, int] = {}
        self._lock = threading.Lock()

    def _live(self, tenant_id: str) -> _Entry | None:
        entry = self._entries.get(tenant_id)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= time.monotonic():
            del self._entries[tenant_id]
            return None
        return entry

    def save(
        self,
        tenant_id: str,
        head: bytes,
        meta: JSON,
        support: list[JSON],
        expected_version: int | None = None,
    ) -> int | None:
        with self._lock:
            current = self._live(tenant_id)
            if expected_version is not None and (current is None or current.model.version != expected_version):
                return None
            version = self._sequences.get(tenant_id, 0) + 1
            self._sequences[tenant_id] = version
            expires = time.monotonic() + self._ttl_s if self._ttl_s else None
            model = StoredModel(version=version, head=bytes(head), meta=copy.deepcopy(meta))
            self._entries[tenant_id] = _Entry(model, copy.deepcopy(support), expires)
            return version

    def load(self, tenant_id: str) -> StoredModel | None:
        with self._lock:
            entry = self._live(tenant_id)
            if entry is None:
                return None
            return StoredModel(entry.model.version, entry.model.head, copy.deepcopy(entry.model.meta))

    def current_version(self, tenant_id: str) -> int | None:
        with self._lock:
            entry = self._live(tenant_id)
            return None if entry is None else entry.model.version

    def load_support(self, tenant_id: str) -> list[JSON] | None:
        with self._lock:
            entry = self._live(tenant_id)
            return None if entry is None else copy.deepcopy(entry.support)

    def delete(self, tenant_id: str) -> bool:
        with self._lock:
            return self._entries.pop(tenant_id, None) is not None

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None
