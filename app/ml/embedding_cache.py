"""Embedding caches: one key recipe, one in-memory LRU (serving, evaluation), one disk cache (training runs).

`cache_key` is the only key recipe: a hash of its string parts, each length-prefixed so that no two part
lists share a key. The LRU keys a text by (scope, generation, text), `scope` being e.g. a tenant id (default
"") and `generation` one life of it (a tenant id can be deleted and created again): the
services scope it per tenant, so a text cached for one tenant is a miss for every other and no answer of one
tenant (`n_embedded`, timings) depends on what another has stored;
the disk cache keys a set of tensors by whatever parts identify them (encoder fingerprint, max tokens,
texts, ...).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from app.ml.embedder import Embedder, EmbedFn
from app.ml.encoder import SentenceEncoder


def cache_key(*parts: str) -> str:
    """sha256 of the length-prefixed UTF-8 parts (hex, 32 characters)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:32]


class EmbeddingLRU:
    """Bounded, thread-safe map (scope, text) -> embedding, for one embedder; 0 entries: computes only.

    Each scope's keys are indexed, so `forget(scope)` costs that scope's entries, not the cache's."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[str, torch.Tensor]] = OrderedDict()  # key -> (scope, embedding)
        self._scopes: dict[str, set[str]] = {}  # scope -> its keys in `_entries`
        self._lock = threading.Lock()

    def embed(
        self, texts: Sequence[str], compute: EmbedFn, scope: str = "", generation: str = ""
    ) -> tuple[torch.Tensor, int]:
        """Embeddings for `texts` (cached ones reused, the other distinct texts computed by `compute` in one
        call) and how many texts were computed. `generation` splits a scope further (a tenant id reused after a
        delete: each life of it has its own entries, and `forget(scope)` drops them all)."""
        keys = [cache_key(scope, generation, text) for text in texts]
        found: dict[str, torch.Tensor] = {}
        with self._lock:
            for key in keys:
                if key in self._entries:
                    self._entries.move_to_end(key)
                    found[key] = self._entries[key][1]
        missing = list(dict.fromkeys(text for text, key in zip(texts, keys, strict=True) if key not in found))
        if missing:
            fresh = self.remember(missing, compute(missing), scope, generation)
            found.update(fresh)
        if not texts:
            return torch.empty(0), 0
        return torch.stack([found[key] for key in keys]), len(missing)

    def remember(
        self, texts: Sequence[str], embeddings: torch.Tensor, scope: str = "", generation: str = ""
    ) -> dict[str, torch.Tensor]:
        """Keep `embeddings` (row i for `texts[i]`) under `scope` (and `generation`); returns them by key."""
        fresh = {cache_key(scope, generation, text): row.clone() for text, row in zip(texts, embeddings, strict=True)}
        if self._max_entries == 0:
            return fresh
        with self._lock:
            keys = self._scopes.setdefault(scope, set())
            for key, row in fresh.items():
                self._entries[key] = (scope, row)
                self._entries.move_to_end(key)
                keys.add(key)
            while len(self._entries) > self._max_entries:
                evicted, (evicted_scope, _) = self._entries.popitem(last=False)
                scope_keys = self._scopes[evicted_scope]
                scope_keys.discard(evicted)
                if not scope_keys:
                    del self._scopes[evicted_scope]
        return fresh

    def forget(self, scope: str) -> None:
        """Drop every embedding kept under `scope` (e.g. a deleted tenant's)."""
        with self._lock:
            for key in self._scopes.pop(scope, ()):
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class CachedEmbedder:
    """An `Embedder` that answers from an `EmbeddingLRU` and asks `base` only for texts it does not hold."""

    base: Embedder
    cache: EmbeddingLRU
    scope: str = ""

    @property
    def fingerprint(self) -> str:
        return self.base.fingerprint

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        return self.cache.embed(texts, self.base.embed, self.scope)[0]


class DiskCache:
    """Named tensors computed once per key and kept as `<prefix><cache_key>.safetensors` in `folder`.

    `folder=None` caches nothing (every call computes).
    """

    def __init__(self, folder: Path | None, prefix: str = "") -> None:
        self.folder = folder
        self.prefix = prefix

    def path(self, parts: Sequence[str]) -> Path | None:
        return None if self.folder is None else self.folder / f"{self.prefix}{cache_key(*parts)}.safetensors"

    def tensors(self, parts: Sequence[str], compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The tensors stored under `parts`, or `compute()`'s, written atomically for the next call."""
        path = self.path(parts)
        if path is not None and path.exists():
            return load_file(str(path))
        tensors = compute()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file({name: value.contiguous() for name, value in tensors.items()}, str(tmp))
            tmp.replace(path)
        return tensors


def embed_cached(
    encoder: SentenceEncoder, texts: Sequence[str], cache_dir: Path | None, batch_size: int = 128
) -> torch.Tensor:
    """`encoder.embed(texts)`, kept on disk under (fingerprint, max_tokens, texts)."""

    def compute() -> dict[str, torch.Tensor]:
        return {"embeddings": encoder.embed(list(texts), batch_size=batch_size)}

    return DiskCache(cache_dir).tensors([encoder.fingerprint, str(encoder.max_tokens), *texts], compute)["embeddings"]
