"""Per-process LRU of decoded heads, validated by (version, encoder fingerprint)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from app.ml.head import TenantHead


@dataclass(frozen=True)
class CachedHead:
    version: int
    fingerprint: str
    head: TenantHead


class HeadCache:
    """Bounded, thread-safe LRU keyed by tenant id."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, CachedHead] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tenant_id: str, version: int) -> CachedHead | None:
        with self._lock:
            entry = self._entries.get(tenant_id)
            if entry is None or entry.version != version:
                return None
            self._entries.move_to_end(tenant_id)
            return entry

    def put(self, tenant_id: str, entry: CachedHead) -> None:
        if self._max_entries == 0:
            return
        with self._lock:
            current = self._entries.get(tenant_id)
            if current is not None and current.version > entry.version:
                return  # never replace a newer head with an older one
            self._entries[tenant_id] = entry
            self._entries.move_to_end(tenant_id)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def drop(self, tenant_id: str) -> None:
        with self._lock:
            self._entries.pop(tenant_id, None)

    def __len__(self) -> int:
        return len(self._entries)
