"""Domain errors with an HTTP status and a machine-readable code (mapped to JSON by the API)."""

from __future__ import annotations

from app.store.base import TenantStore


class ServiceError(Exception):
    """A request the service refuses, with the status and code the client will see."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}  # e.g. Retry-After on a 429


def invalid(code: str, message: str) -> ServiceError:
    """422: the request is well-formed JSON but not acceptable."""
    return ServiceError(422, code, message)


def unknown_tenant(tenant_id: str) -> ServiceError:
    return ServiceError(404, "unknown_tenant", f"tenant {tenant_id!r} has no model; POST /adapt first")


def unknown_version(tenant_id: str, version: int) -> ServiceError:
    return ServiceError(404, "unknown_version", f"version {version} of {tenant_id!r} is not retained")


def missing_version(store: TenantStore, tenant_id: str, version: int | None) -> ServiceError:
    """The one rule for a tenant's `version` (None: its current one) that was not found: 404 `unknown_version`
    while the tenant has a current model, else 404 `unknown_tenant`."""
    if version is None or store.current_version(tenant_id) is None:
        return unknown_tenant(tenant_id)
    return unknown_version(tenant_id, version)


def encoder_not_served(tenant_id: str, encoder: str) -> ServiceError:
    return ServiceError(
        409,
        "encoder_not_served",
        f"tenant {tenant_id!r} was adapted with encoder {encoder!r}, which this server does not serve "
        "(GET /encoders lists the served ones); adapt it again (mode replace) with a served encoder",
    )
