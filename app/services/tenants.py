"""TenantService: describe, list versions of, roll back and delete tenants (typed results)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from app.services.errors import missing_version, unknown_tenant
from app.services.model_cache import HeadCache
from app.services.records import DEFAULT_ENCODER, UnusableModel, checked_fields, open_record, stored_encoder
from app.store.base import JSON, TenantStore


@dataclass(frozen=True)
class ModelSummary:
    """What a stored version was adapted from and how; tampered metadata fields read as their defaults."""

    version: int
    head_bytes: int
    labels: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    n_examples: int = 0
    n_descriptions: int = 0
    inner_steps: int | None = None
    oos_threshold: float | None = None
    encoder_fingerprint: str | None = None
    created_at: str | None = None
    task: str = "single_label"
    encoder: str = DEFAULT_ENCODER
    n_negatives: int = 0
    thresholds: dict[str, float] | None = None  # multi-label: each label's decision threshold
    encoder_choice: dict[str, Any] | None = None  # why `encoder: "auto"` chose the tier (`tier_choice.choice_json`)


@dataclass(frozen=True)
class TenantDescription:
    tenant_id: str
    status: str  # `ready`, or why the stored head cannot serve as is (`stale`, `corrupt`, `schema`, `not_served`)
    model: ModelSummary


@dataclass(frozen=True)
class VersionHistory:
    tenant_id: str
    current: int
    versions: list[ModelSummary]  # newest first


@dataclass(frozen=True)
class RollbackResult:
    tenant_id: str
    version: int
    restored_from: int


_SUMMARISED = [f.name for f in fields(ModelSummary) if f.name not in ("version", "head_bytes")]


def _summary(version: int, head_bytes: int, meta: JSON) -> ModelSummary:
    return ModelSummary(version=version, head_bytes=head_bytes, **checked_fields(meta, _SUMMARISED))


def page(ids: list[str], limit: int, after: str | None = None) -> tuple[list[str], str | None]:
    """The sorted `ids` after `after`, at most `limit`, and the last one returned when more follow."""
    start = bisect_right(ids, after) if after is not None else 0
    chosen = ids[start : start + limit]
    more = start + limit < len(ids)
    return chosen, (chosen[-1] if more and chosen else None)


class TenantService:
    def __init__(
        self,
        store: TenantStore,
        cache: HeadCache,
        fingerprints: dict[str, str],
        forget: Sequence[Callable[[str], None]] = (),
    ) -> None:
        self.store = store
        self.cache = cache
        self.fingerprints = fingerprints  # served encoder name -> fingerprint
        # what a deleted tenant leaves in this process: its decoded head, and each `forget(tenant_id)` handed in
        # (embedding, report and routing caches of the other services)
        self._forget = (cache.drop, *forget)

    def describe(self, tenant_id: str) -> TenantDescription:
        stored = self.store.load(tenant_id)
        if stored is None:
            raise unknown_tenant(tenant_id)
        encoder = stored_encoder(stored.meta)
        fingerprint = self.fingerprints.get(encoder)
        status = "not_served" if fingerprint is None else "ready"
        if fingerprint is not None:
            try:
                open_record(stored, fingerprint, encoder)
            except UnusableModel as exc:
                status = exc.reason
        return TenantDescription(tenant_id, status, _summary(stored.version, len(stored.head), stored.meta))

    def versions(self, tenant_id: str) -> VersionHistory:
        infos = self.store.versions(tenant_id)
        if not infos:
            raise unknown_tenant(tenant_id)
        summaries = [_summary(info.version, info.head_bytes, info.meta) for info in infos]
        return VersionHistory(tenant_id, infos[0].version, summaries)

    def rollback(self, tenant_id: str, version: int) -> RollbackResult:
        new_version = self.store.rollback(tenant_id, version)
        if new_version is None:
            raise missing_version(self.store, tenant_id, version)
        self.cache.drop(tenant_id)
        return RollbackResult(tenant_id, new_version, version)

    def delete(self, tenant_id: str) -> None:
        """Delete the tenant's models and forget it in every cache of this process (also when nothing was
        stored: an expired tenant's caches go too)."""
        existed = self.store.delete(tenant_id)
        for forget in self._forget:
            forget(tenant_id)
        if not existed:
            raise unknown_tenant(tenant_id)

    def list_ids(self, limit: int, after: str | None = None) -> tuple[list[str], str | None]:
        """Tenants with a model, sorted, at most `limit` of those after `after`, and the cursor of the next page
        (None: this was the last)."""
        return page(sorted(self.store.tenant_ids()), limit, after)

    def existing(
        self, tenant_ids: frozenset[str], limit: int, after: str | None = None
    ) -> tuple[list[str], str | None]:
        """Those of `tenant_ids` with a current model, sorted, paged as `list_ids` pages."""
        candidates = page(sorted(tenant_ids), len(tenant_ids), after)[0]
        return page([t for t in candidates if self.store.current_version(t) is not None], limit)
