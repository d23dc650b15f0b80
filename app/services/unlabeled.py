"""UnlabeledService: a tenant's pool of unlabeled texts (its traffic), bounded and kept beside its model; and
`pool_for_fit`, what an `/adapt` fits with from it.

The pool feeds `/suggest` (which texts to label next) and `/adapt`, which fits with it where cross-validation shows
a gain (`app.ml.unlabeled`). It belongs to the tenant's current model: it needs one, and is deleted and expires with
it. Texts pass the checks of `/predict` texts; at most `max_examples` per request, `max_unlabeled` kept (the oldest
go first; a repeated text becomes the newest).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from anyio import to_thread

from app.ml.held_out import can_cross_validate
from app.ml.policy import Limits
from app.ml.tenant_fit import SupportSet
from app.ml.unlabeled import MIN_POOL_PER_LABEL, PoolChoice, UnlabeledMode, choose_unlabeled, pool_too_small
from app.services.context import TierContext
from app.services.errors import invalid, unknown_tenant
from app.services.validation import check_text
from app.store.base import PoolUpdate, TenantStore


@dataclass(frozen=True)
class PoolFit:
    """The unlabeled texts an `/adapt` fits with, and how they were chosen."""

    rows: torch.Tensor | None  # their embeddings; None: the fit does not use the pool
    choice: PoolChoice
    timings_ms: dict[str, float]  # `embed` (the encoder's part) and `unlabeled` (the decision)
    n_embedded: int  # texts that went through the encoder


def pool_for_fit(
    context: TierContext,
    store: TenantStore,
    support: SupportSet,
    mode: UnlabeledMode,
    steps: int,
    tenant_id: str,
    generation: str,
    keep: bool = False,
) -> PoolFit:
    """Whether and with what a fit on `support` uses the tenant's pool (its texts the support set does not hold,
    embedded through the tier's pool cache): cross-validated (`app.ml.unlabeled`) unless `keep` (an append, a
    correction or a rebuild of a version fitted with the pool) fits with it again without deciding anew."""
    started = time.perf_counter()
    no_time = {"embed": 0.0, "unlabeled": 0.0}
    if mode == "off":
        return PoolFit(None, PoolChoice(mode, False, "unlabeled is off"), no_time, 0)
    if support.label_sets is not None:
        return PoolFit(None, PoolChoice(mode, False, "multi-label tenants do not use unlabeled texts"), no_time, 0)
    texts = pool_texts(store, tenant_id, support, context.limits.max_unlabeled)
    n_labels = len(support.labels)
    if not texts:
        return PoolFit(None, PoolChoice(mode, False, "the tenant has no unlabeled texts"), no_time, 0)
    if pool_too_small(len(texts), n_labels):
        need = MIN_POOL_PER_LABEL * n_labels
        reason = f"{len(texts)} unlabeled texts: fewer than {need} ({MIN_POOL_PER_LABEL} per label) are not tried"
        return PoolFit(None, PoolChoice(mode, False, reason, len(texts)), no_time, 0)
    if keep:
        pool_rows, n_pool = context.embed_pool(texts, tenant_id, generation)
        timings = {"embed": _ms(time.perf_counter() - started), "unlabeled": 0.0}
        reason = f"{len(texts)} unlabeled texts used again, as the version this one continues was fitted"
        return PoolFit(pool_rows, PoolChoice(mode, True, reason, len(texts)), timings, n_pool)
    if not can_cross_validate(support.targets):
        return PoolFit(None, PoolChoice(mode, False, "too few examples to cross-validate", len(texts)), no_time, 0)
    fit_texts, targets = support.fit_tensors()
    rows, n_rows = context.embeddings.embed(fit_texts, context.embedder.embed, tenant_id, generation)
    pool_rows, n_pool = context.embed_pool(texts, tenant_id, generation)
    embedded = time.perf_counter()
    inner = context.inner_for(support.task).with_steps(steps)
    with context.math():
        use, with_, without = choose_unlabeled(rows, targets, len(support.texts), n_labels, pool_rows, inner)
    verdict = "used: cross-validated accuracy rises" if use else "not used: cross-validated accuracy does not rise"
    reason = f"{len(texts)} unlabeled texts {verdict} ({100 * with_:.1f} % with, {100 * without:.1f} % without)"
    timings = {"embed": _ms(embedded - started), "unlabeled": _ms(time.perf_counter() - embedded)}
    choice = PoolChoice(mode, use, reason, len(texts), with_, without)
    return PoolFit(pool_rows if use else None, choice, timings, n_rows + n_pool)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def pool_texts(store: TenantStore, tenant_id: str, support: SupportSet, limit: int) -> list[str]:
    """The tenant's unlabeled texts that its support set does not label, newest first, at most `limit` read."""
    labeled = set(support.texts)
    return [text for text in store.unlabeled(tenant_id, limit) if text not in labeled]


@dataclass(frozen=True)
class PoolInfo:
    tenant_id: str
    size: int  # texts in the pool
    max_texts: int  # the pool's cap


class UnlabeledService:
    """Adds to, describes and empties tenants' unlabeled pools."""

    def __init__(self, store: TenantStore, limits: Limits, forget: Sequence[Callable[[str], None]] = ()) -> None:
        self.store = store
        self.limits = limits
        self._forget = forget  # each tier's pool embeddings of a tenant: emptied with its pool

    def add(self, tenant_id: str, texts: list[str]) -> PoolUpdate:
        """Validate the texts, then add them (404 when the tenant has no model; nothing is kept then)."""
        if not texts:
            raise invalid("no_texts", "texts must hold at least one text")
        if len(texts) > self.limits.max_examples:
            raise invalid(
                "too_many_texts", f"{len(texts)} texts; the limit for /unlabeled is {self.limits.max_examples}"
            )
        for i, text in enumerate(texts):
            check_text(text, self.limits, f"texts[{i}]")
        update = self.store.add_unlabeled(tenant_id, texts, self.limits.max_unlabeled)
        if update is None:
            raise unknown_tenant(tenant_id)
        return update

    async def add_async(self, tenant_id: str, texts: list[str]) -> PoolUpdate:
        """`add` from the event loop: on it for an in-process store, else in a worker thread."""
        if self.store.in_process:
            return self.add(tenant_id, texts)
        return await to_thread.run_sync(self.add, tenant_id, texts)

    def info(self, tenant_id: str) -> PoolInfo:
        if self.store.current_version(tenant_id) is None:
            raise unknown_tenant(tenant_id)
        return PoolInfo(tenant_id, self.store.unlabeled_size(tenant_id), self.limits.max_unlabeled)

    def clear(self, tenant_id: str) -> int:
        """Empty the pool; how many texts it held."""
        if self.store.current_version(tenant_id) is None:
            raise unknown_tenant(tenant_id)
        held = self.store.clear_unlabeled(tenant_id)
        for forget in self._forget:
            forget(tenant_id)
        return held
