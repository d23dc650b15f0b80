"""UnlabeledService: a tenant's pool of unlabeled texts (its traffic), bounded and kept beside its model.

The pool feeds `/suggest` (which texts to label next) and `/adapt`, which fits with it where cross-validation shows
a gain (`app.ml.unlabeled`). It belongs to the tenant's current model: it needs one, and is deleted and expires with
it. Texts pass the checks of `/predict` texts; at most `max_examples` per request, `max_unlabeled` kept (the oldest
go first; a repeated text becomes the newest).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.ml.policy import Limits
from app.ml.tenant_fit import SupportSet
from app.services.errors import invalid, unknown_tenant
from app.services.validation import check_text
from app.store.base import PoolUpdate, TenantStore


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
