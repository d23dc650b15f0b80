"""Evidence for predictions: the support examples of a label nearest to a text, by cosine similarity.

A tenant version's support matrix (its examples' unit embeddings, which head labels each example belongs to, the
texts) is built once from the stored support rows and the tier's per-tenant embedding cache (scope: the tenant id,
generation: the record's, so the texts /adapt embedded are reused), then kept in `SupportMatrices`, a bounded LRU
keyed by tenant, version and encoder fingerprint (a tenant id never reuses a version number, even after a delete).
Only the tenant's own matrix is ever read for its texts; `forget(tenant_id)` (DELETE) drops every version of it.
Label descriptions are not examples and never evidence.

Finding the evidence of a batch is one matmul of its query embeddings against the matrix, then a masked top-k per
asked label: no Python loop over examples.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from app.ml.embedder import Embedder
from app.ml.embedding_cache import EmbeddingLRU
from app.ml.head import TenantHead
from app.services.records import stored_generation
from app.services.support import split_stored
from app.store.base import TenantStore

MAX_EXPLAIN = 10
MAX_MATRICES = 64
MAX_MATRIX_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Evidence:
    label: str
    text: str
    similarity: float


@dataclass(frozen=True)
class SupportMatrix:
    """One tenant version's examples: unit embeddings (m x d), membership of each head label (labels x m), texts."""

    embeddings: torch.Tensor
    members: torch.Tensor
    texts: list[str]

    @property
    def nbytes(self) -> int:
        return (
            self.embeddings.numel() * self.embeddings.element_size()
            + self.members.numel()
            + sum(len(t) + 64 for t in self.texts)
        )


def build_matrix(
    store: TenantStore,
    tenant_id: str,
    version: int,
    head: TenantHead,
    embedder: Embedder,
    cache: EmbeddingLRU,
) -> SupportMatrix | None:
    """The support matrix of `tenant_id`'s `version` (None when the version is gone), its texts embedded through
    the tenant's own cache entries."""
    stored = store.load(tenant_id, version=version)
    rows = store.load_support(tenant_id, version=version)
    if stored is None or rows is None:
        return None
    examples, _ = split_stored(rows)
    index = {label: i for i, label in enumerate(head.labels)}
    texts = [row["text"] for row in examples]
    members = torch.zeros(len(head.labels), len(examples), dtype=torch.bool)
    for j, row in enumerate(examples):
        for label in row["labels"] if "labels" in row else [row["label"]]:
            if label in index:
                members[index[label], j] = True
    embeddings = torch.zeros(0, 0)
    if texts:
        embeddings, _ = cache.embed(texts, embedder.embed, tenant_id, stored_generation(stored.meta))
        embeddings = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    return SupportMatrix(embeddings.contiguous(), members, texts)


def nearest(
    matrix: SupportMatrix, queries: torch.Tensor, asked: list[list[int]], k: int, labels: list[str]
) -> list[list[Evidence]]:
    """Per query row, for each head label index in `asked[row]` (in order), its `k` examples most similar to the
    query (most similar first; fewer when the label has fewer)."""
    n = len(asked)
    width = max((len(a) for a in asked), default=0)
    if n == 0 or width == 0 or not matrix.texts:
        return [[] for _ in range(n)]
    index = torch.zeros(n, width, dtype=torch.long)
    valid = torch.zeros(n, width, dtype=torch.bool)
    for row, label_ids in enumerate(asked):
        index[row, : len(label_ids)] = torch.tensor(label_ids, dtype=torch.long)
        valid[row, : len(label_ids)] = True
    sims = torch.nn.functional.normalize(queries.float(), dim=-1) @ matrix.embeddings.T  # n x m
    masks = matrix.members[index] & valid.unsqueeze(-1)  # n x width x m
    scored = sims.unsqueeze(1).expand(-1, width, -1).masked_fill(~masks, float("-inf"))
    values, positions = torch.topk(scored, min(k, len(matrix.texts)), dim=-1)
    out: list[list[Evidence]] = []
    for row, (row_values, row_positions) in enumerate(zip(values.tolist(), positions.tolist(), strict=True)):
        found = []
        for slot, (slot_values, slot_positions) in enumerate(zip(row_values, row_positions, strict=True)):
            if slot >= len(asked[row]):
                break
            label = labels[asked[row][slot]]
            found += [
                Evidence(label, matrix.texts[p], round(v, 6))
                for v, p in zip(slot_values, slot_positions, strict=True)
                if v != float("-inf")
            ]
        out.append(found)
    return out


class SupportMatrices:
    """Bounded, thread-safe LRU of support matrices keyed by (tenant, version, fingerprint)."""

    def __init__(self, max_entries: int = MAX_MATRICES, max_bytes: int = MAX_MATRIX_BYTES) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int, str], tuple[SupportMatrix, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, tenant_id: str, version: int, fingerprint: str) -> SupportMatrix | None:
        key = (tenant_id, version, fingerprint)
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
            return found[0]

    def put(self, tenant_id: str, version: int, fingerprint: str, matrix: SupportMatrix) -> None:
        size = matrix.nbytes
        if self._max_entries == 0 or size > self._max_bytes:
            return
        key = (tenant_id, version, fingerprint)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (matrix, size)
            self._bytes += size
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted

    def forget(self, tenant_id: str) -> None:
        """Drop every version of `tenant_id` (a deleted tenant)."""
        with self._lock:
            for key in [key for key in self._entries if key[0] == tenant_id]:
                self._bytes -= self._entries.pop(key)[1]

    def __len__(self) -> int:
        return len(self._entries)
