"""TierContext: what every service of one encoder tier shares, built once per tier by the composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch

from app.ml.embedder import Embedder
from app.ml.embedding_cache import EmbeddingLRU
from app.ml.head import MULTI_LABEL
from app.ml.learner import InnerLoopParams
from app.ml.tenant_fit import OosRule
from app.ml.threads import intra_op_threads
from app.services.errors import encoder_not_served
from app.services.records import DEFAULT_ENCODER, stored_encoder
from app.services.validation import Limits
from app.store.base import JSON

EmbedAsync = Callable[[Sequence[str]], Awaitable[torch.Tensor]]


@dataclass(frozen=True)
class TierContext:
    """One tier's encoder and the settings its adaptation, prediction and insight services all apply."""

    embedder: Embedder
    inner: InnerLoopParams  # the inner loop of single-label tenants
    limits: Limits = field(default_factory=Limits)
    encoder_name: str = DEFAULT_ENCODER  # the tier's name (stored in each record it adapts)
    multi_inner: InnerLoopParams | None = None  # the inner loop of multi-label tenants (None: `inner`)
    oos_rule: OosRule = field(default_factory=OosRule)
    embeddings: EmbeddingLRU = field(default_factory=lambda: EmbeddingLRU(0))  # support embeddings, per tenant
    pool_embeddings: EmbeddingLRU = field(default_factory=lambda: EmbeddingLRU(0))  # unlabeled texts', per tenant
    math_threads: int | None = None  # intra-op threads for per-tenant math (None: the thread's own)
    embed_async: EmbedAsync | None = None  # the micro-batcher's await, when there is one

    def inner_for(self, task: str) -> InnerLoopParams:
        """The inner loop of `task`'s tenants."""
        if task == MULTI_LABEL and self.multi_inner is not None:
            return self.multi_inner
        return self.inner

    def embed_pool(self, texts: list[str], tenant_id: str, generation: str) -> tuple[torch.Tensor, int]:
        """Embeddings of a tenant's unlabeled texts from its own entries of the pool cache (kept apart from the
        support texts', so a large pool never evicts them), and how many texts went through the encoder."""
        return self.pool_embeddings.embed(texts, self.embedder.embed, tenant_id, generation)

    def math(self) -> AbstractContextManager[None]:
        """Run the block's per-tenant math on `math_threads` intra-op threads (`app.ml.threads`)."""
        return intra_op_threads(self.math_threads)

    def require_own_encoder(self, tenant_id: str, meta: JSON) -> None:
        """409 `encoder_not_served` unless the record `meta` describes was adapted with this tier's encoder."""
        if stored_encoder(meta) != self.encoder_name:
            raise encoder_not_served(tenant_id, stored_encoder(meta))
