"""TenantService: describe, list versions of, roll back and delete tenants."""

from __future__ import annotations

from typing import Any

from app.services.errors import ServiceError, unknown_tenant
from app.services.model_cache import HeadCache
from app.services.records import UnusableModel, open_record
from app.store.base import JSON, TenantStore


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_SUMMARY_FIELDS: dict[str, tuple[Any, Any]] = {  # name: (default, type check); tampered fields read as absent
    "labels": ([], lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "counts": ({}, lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_int(n) for k, n in v.items())),
    "n_examples": (0, _is_int),
    "n_descriptions": (0, _is_int),
    "inner_steps": (None, lambda v: v is None or _is_int(v)),
    "oos_threshold": (None, lambda v: v is None or (isinstance(v, int | float) and not isinstance(v, bool))),
    "encoder_fingerprint": (None, lambda v: v is None or isinstance(v, str)),
    "created_at": (None, lambda v: v is None or isinstance(v, str)),
}


def _summary(meta: JSON) -> dict[str, Any]:
    meta = {**meta, "counts": _counts_by_label(meta.get("labels"), meta.get("counts"))}
    summary = {}
    for name, (default, valid) in _SUMMARY_FIELDS.items():
        value = meta.get(name, default)
        summary[name] = value if valid(value) else default
    return summary


def _counts_by_label(labels: Any, counts: Any) -> Any:
    """Stored counts are a list aligned with `labels` (older records: a dict); both read as a dict."""
    if isinstance(labels, list) and isinstance(counts, list) and len(labels) == len(counts):
        return dict(zip(labels, counts, strict=True)) if all(isinstance(x, str) for x in labels) else None
    return counts


class TenantService:
    def __init__(self, store: TenantStore, cache: HeadCache, fingerprint: str) -> None:
        self.store = store
        self.cache = cache
        self.fingerprint = fingerprint

    def describe(self, tenant_id: str) -> dict[str, Any]:
        stored = self.store.load(tenant_id)
        if stored is None:
            raise unknown_tenant(tenant_id)
        try:
            open_record(stored, self.fingerprint)
            status = "ready"
        except UnusableModel as exc:
            status = exc.reason
        return {
            "tenant_id": tenant_id,
            "version": stored.version,
            "status": status,
            **_summary(stored.meta),
            "head_bytes": len(stored.head),
        }

    def versions(self, tenant_id: str) -> dict[str, Any]:
        infos = self.store.versions(tenant_id)
        if not infos:
            raise unknown_tenant(tenant_id)
        return {
            "tenant_id": tenant_id,
            "current": infos[0].version,
            "versions": [
                {"version": info.version, "head_bytes": info.head_bytes, **_summary(info.meta)} for info in infos
            ],
        }

    def rollback(self, tenant_id: str, version: int) -> dict[str, Any]:
        new_version = self.store.rollback(tenant_id, version)
        if new_version is None:
            if self.store.current_version(tenant_id) is None:
                raise unknown_tenant(tenant_id)
            raise ServiceError(404, "unknown_version", f"version {version} of {tenant_id!r} is not retained")
        self.cache.drop(tenant_id)
        return {"tenant_id": tenant_id, "version": new_version, "restored_from": version}

    def delete(self, tenant_id: str) -> None:
        existed = self.store.delete(tenant_id)
        self.cache.drop(tenant_id)
        if not existed:
            raise unknown_tenant(tenant_id)
