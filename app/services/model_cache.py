"""Per-process LRU of decoded heads, validated by (version, encoder fingerprint), bounded in count and bytes."""

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


def head_nbytes(head: TenantHead) -> int:
    """Approximate memory a decoded, serving head holds: its tensors (int8 and float32 forms) plus its labels."""
    tensors = head.weight.serving_nbytes + head.prototypes.serving_nbytes + head.bias.numel() * head.bias.element_size()
    return tensors + sum(len(label) + 64 for label in head.labels)


class HeadCache:
    """Bounded, thread-safe LRU keyed by tenant id: at most `max_entries` heads and `max_bytes` bytes."""

    def __init__(self, max_entries: int, max_bytes: int | None = None) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[CachedHead, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, tenant_id: str, version: int) -> CachedHead | None:
        with self._lock:
            found = self._entries.get(tenant_id)
            if found is None or found[0].version != version:
                return None
            self._entries.move_to_end(tenant_id)
            return found[0]

    def put(self, tenant_id: str, entry: CachedHead) -> None:
        size = head_nbytes(entry.head)
        if self._max_entries == 0 or (self._max_bytes is not None and size > self._max_bytes):
            return
        with self._lock:
            current = self._entries.get(tenant_id)
            if current is not None:
                if current[0].version > entry.version:
                    return  # never replace a newer head with an older one
                self._bytes -= current[1]
            self._entries[tenant_id] = (entry, size)
            self._entries.move_to_end(tenant_id)
            self._bytes += size
            while len(self._entries) > self._max_entries or (
                self._max_bytes is not None and self._bytes > self._max_bytes
            ):
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted

    def drop(self, tenant_id: str) -> None:
        with self._lock:
            found = self._entries.pop(tenant_id, None)
            if found is not None:
                self._bytes -= found[1]

    @property
    def nbytes(self) -> int:
        """Bytes currently held (by `head_nbytes`)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)
