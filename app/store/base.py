"""The tenant store contract: versioned, atomic writes of (head bytes, JSON metadata, support set), and a bounded
pool of unlabeled texts per tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

JSON = dict[str, Any]

NO_MODEL = 0
"""`expected_version` meaning "the tenant has no current model" (new, expired or deleted): a create that
loses to a concurrent writer gets None instead of overwriting it. Real versions start at 1."""


class StoreUnavailable(RuntimeError):
    """The backing store cannot be reached (or timed out)."""


@dataclass(frozen=True)
class StoredModel:
    """One version of a tenant's model as the store holds it."""

    version: int
    head: bytes
    meta: JSON


@dataclass(frozen=True)
class VersionInfo:
    """A retained version: its number, head size and metadata."""

    version: int
    head_bytes: int
    meta: JSON


@dataclass(frozen=True)
class PoolUpdate:
    """What adding texts to a tenant's unlabeled pool did."""

    added: int  # texts new to the pool
    repeated: int  # texts already in it (they become the newest), or given twice in the call
    dropped: int  # oldest texts removed to keep the pool within its cap
    size: int  # texts in the pool afterwards


@runtime_checkable
class TenantStore(Protocol):
    """Where tenant models live. Every write is atomic and gets a new, strictly larger version."""

    in_process: bool  # True when every call is memory work (no I/O): callers may then use it on an event loop

    def save(
        self,
        tenant_id: str,
        head: bytes,
        meta: JSON,
        support: list[JSON],
        expected_version: int | None = None,
    ) -> int | None:
        """Write a new version and return its number.

        With `expected_version`, write only if the current version is exactly that one
        (compare-and-set; `NO_MODEL` = only if the tenant has no current model) and return None otherwise.
        """
        ...

    def load(self, tenant_id: str, version: int | None = None) -> StoredModel | None:
        """The current model (or a retained `version`), or None for an unknown tenant/version."""
        ...

    def current_version(self, tenant_id: str) -> int | None:
        """The current version number alone (cheap cache validation)."""
        ...

    def load_support(self, tenant_id: str, version: int | None = None) -> list[JSON] | None:
        """The support set stored beside the current model (or a retained `version`)."""
        ...

    def versions(self, tenant_id: str) -> list[VersionInfo]:
        """Retained versions, newest first (the current one included)."""
        ...

    def rollback(self, tenant_id: str, version: int) -> int | None:
        """Re-publish retained `version` as a new current version; None when it is not retained."""
        ...

    def delete(self, tenant_id: str) -> bool:
        """Remove the tenant (its unlabeled pool too); True when it existed. Version numbers keep increasing
        afterwards."""
        ...

    def add_unlabeled(self, tenant_id: str, texts: list[str], max_texts: int) -> PoolUpdate | None:
        """Add texts to the tenant's pool of unlabeled texts, atomically: distinct texts by arrival (a repeated
        one becomes the newest), the oldest dropped beyond `max_texts`. The pool lives and expires with the
        tenant and survives new versions. None, writing nothing, when the tenant has no current model."""
        ...

    def unlabeled(self, tenant_id: str, limit: int | None = None) -> list[str]:
        """The pool's texts, newest first, at most `limit`; [] for an unknown tenant or an empty pool."""
        ...

    def unlabeled_size(self, tenant_id: str) -> int:
        """How many texts the pool holds (0 for an unknown tenant), without reading them."""
        ...

    def clear_unlabeled(self, tenant_id: str) -> int:
        """Empty the pool; how many texts it held (0 for an unknown tenant)."""
        ...

    def tenant_ids(self) -> list[str]:
        """Every tenant with a current model."""
        ...

    def ping(self) -> None:
        """Raise `StoreUnavailable` when the store cannot serve requests."""
        ...

    def close(self) -> None: ...
