"""TenantService: describe and delete tenants."""

from __future__ import annotations

from typing import Any

from app.services.errors import unknown_tenant
from app.services.model_cache import HeadCache
from app.services.records import UnusableModel, open_record
from app.store.base import TenantStore


class TenantService:
    def __init__(self, store: TenantStore, cache: HeadCache, fingerprint: str) -> None:
        self.store = store
        self.cache = cache
        self.fingerprint = fingerprint

    def describe(self, tenant_id: str) -> dict[str, Any]:
        stored = self.store.load(tenant_id)
        if stored is None:
            raise unknown_tenant(tenant_id)
        meta = stored.meta
        try:
            open_record(stored, self.fingerprint)
            status = "ready"
        except UnusableModel as exc:
            status = exc.reason
        return {
            "tenant_id": tenant_id,
            "version": stored.version,
            "status": status,
            "labels": meta.get("labels", []),
            "counts": meta.get("counts", {}),
            "n_examples": meta.get("n_examples", 0),
            "inner_steps": meta.get("inner_steps"),
            "encoder_fingerprint": meta.get("encoder_fingerprint"),
            "created_at": meta.get("created_at"),
            "head_bytes": len(stored.head),
        }

    def delete(self, tenant_id: str) -> None:
        existed = self.store.delete(tenant_id)
        self.cache.drop(tenant_id)
        if not existed:
            raise unknown_tenant(tenant_id)
