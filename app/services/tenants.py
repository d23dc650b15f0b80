"""TenantService: describe, list versions of, roll back and delete tenants (typed results)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.services.errors import unknown_tenant, unknown_version
from app.services.model_cache import HeadCache
from app.services.records import DEFAULT_ENCODER, UnusableModel, open_record, stored_encoder
from app.store.base import JSON, TenantStore


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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


_CHECKS: dict[str, Any] = {  # metadata field: type check
    "labels": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "counts": lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_int(n) for k, n in v.items()),
    "n_examples": _is_int,
    "n_descriptions": _is_int,
    "inner_steps": lambda v: v is None or _is_int(v),
    "oos_threshold": lambda v: v is None or (isinstance(v, int | float) and not isinstance(v, bool)),
    "encoder_fingerprint": lambda v: v is None or isinstance(v, str),
    "created_at": lambda v: v is None or isinstance(v, str),
    "task": lambda v: v in ("single_label", "multi_label"),
    "encoder": lambda v: isinstance(v, str),
    "n_negatives": _is_int,
    "thresholds": lambda v: isinstance(v, dict) and all(isinstance(t, float | int) for t in v.values()),
}


def _summary(version: int, head_bytes: int, meta: JSON) -> ModelSummary:
    meta = {
        **meta,
        "counts": _counts_by_label(meta.get("labels"), meta.get("counts")),
        "thresholds": _counts_by_label(meta.get("labels"), meta.get("thresholds")),
    }
    fields = {name: meta[name] for name, valid in _CHECKS.items() if name in meta and valid(meta[name])}
    return ModelSummary(version=version, head_bytes=head_bytes, **fields)


def _counts_by_label(labels: Any, counts: Any) -> dict[str, int] | None:
    """Stored counts (or thresholds) are a list aligned with `labels`; read as a dict (None when they do not line
    up)."""
    if isinstance(labels, list) and isinstance(counts, list) and len(labels) == len(counts):
        return dict(zip(labels, counts, strict=True)) if all(isinstance(x, str) for x in labels) else None
    return None


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
            if self.store.current_version(tenant_id) is None:
                raise unknown_tenant(tenant_id)
            raise unknown_version(tenant_id, version)
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

    def list_ids(self, limit: int) -> list[str]:
        """Every tenant with a model, sorted, at most `limit`."""
        return sorted(self.store.tenant_ids())[:limit]

    def existing(self, tenant_ids: frozenset[str]) -> list[str]:
        """Those of `tenant_ids` with a current model, sorted."""
        return [t for t in sorted(tenant_ids) if self.store.current_version(t) is not None]
