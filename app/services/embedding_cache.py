"""Per-process LRU of support-text embeddings, so re-adapting re-embeds only new texts.

Entries are scoped (the services pass the tenant id): a text cached for one tenant is a miss for every other,
so no answer of one tenant (`n_embedded`, timings) depends on what another tenant has stored.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch


class EmbeddingCache:
    """Bounded, thread-safe map (scope, text) -> embedding for one encoder (the process's)."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(scope: str, text: str) -> bytes:
        scope_bytes = scope.encode("utf-8")
        payload = len(scope_bytes).to_bytes(4, "big") + scope_bytes + text.encode("utf-8")
        return hashlib.blake2b(payload, digest_size=16).digest()

    def embed(
        self, texts: Sequence[str], embed: Callable[[list[str]], torch.Tensor], scope: str = ""
    ) -> tuple[torch.Tensor, int]:
        """Embeddings for `texts` (those cached in `scope` reused, the rest computed by `embed`) and how many
        were computed."""
        keys = [self._key(scope, text) for text in texts]
        found: dict[bytes, torch.Tensor] = {}
        with self._lock:
            for key in keys:
                if key in self._entries:
                    self._entries.move_to_end(key)
                    found[key] = self._entries[key]
        missing = list(dict.fromkeys(text for text, key in zip(texts, keys, strict=True) if key not in found))
        if missing:
            computed = embed(missing)
            fresh = {self._key(scope, text): row.clone() for text, row in zip(missing, computed, strict=True)}
            found.update(fresh)
            self._remember(fresh)
        if not texts:
            return torch.empty(0), 0
        return torch.stack([found[key] for key in keys]), len(missing)

    def _remember(self, fresh: dict[bytes, torch.Tensor]) -> None:
        if self._max_entries == 0:
            return
        with self._lock:
            for key, row in fresh.items():
                self._entries[key] = row
                self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
