"""Admin endpoints for API keys, and `GET /tenants` filtered by the caller's scope."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.access.guard import AccessGuard, Principal
from app.access.keys import ApiKey
from app.api.deps import get_runtime
from app.api.schemas import ERROR_RESPONSES, TenantId
from app.services.errors import ServiceError
from app.services.runtime import Runtime

router = APIRouter()
_MAX_LISTED = 10_000


class KeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "acme backend", "tenants": ["acme-support"], "admin": False}]},
    )
    name: str = Field("", max_length=100, description="Free-form label for humans.")
    tenants: list[TenantId] = Field(default_factory=list, max_length=1000, description="Tenants the key may use.")
    admin: bool = Field(False, description="Admin keys reach every tenant and manage keys.")

    @model_validator(mode="after")
    def _scoped_or_admin(self) -> KeyCreate:
        if not self.admin and not self.tenants:
            raise ValueError("a non-admin key needs at least one tenant")
        return self


class KeyInfo(BaseModel):
    key_id: str
    name: str
    admin: bool
    tenants: list[str]
    prefix: str = Field(description="First characters of the key, to recognise it; never the key.")
    created_at: str

    @classmethod
    def of(cls, record: ApiKey) -> KeyInfo:
        return cls(
            key_id=record.key_id,
            name=record.name,
            admin=record.admin,
            tenants=list(record.tenants),
            prefix=record.prefix,
            created_at=record.created_at,
        )


class KeyCreated(KeyInfo):
    key: str = Field(description="The API key. Shown once: only its sha256 is stored.")


class KeyList(BaseModel):
    keys: list[KeyInfo]


class TenantList(BaseModel):
    tenants: list[str] = Field(description="Tenant ids with a model that the calling key may access.")


def get_guard(request: Request) -> AccessGuard:
    return request.app.state.access_guard


def get_principal(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if principal is None:  # only when the access middleware was not installed
        raise ServiceError(401, "missing_api_key", "no authenticated caller")
    return principal


GuardDep = Annotated[AccessGuard, Depends(get_guard)]


@router.post("/admin/keys", status_code=201, response_model=KeyCreated, responses=ERROR_RESPONSES, tags=["admin"])
def create_key(body: KeyCreate, guard: GuardDep) -> KeyCreated:
    """Create an API key scoped to tenants (or an admin key). The key is in this response only."""
    key, record = guard.create_key(body.name, body.admin, list(body.tenants))
    return KeyCreated(**KeyInfo.of(record).model_dump(), key=key)


@router.get("/admin/keys", response_model=KeyList, tags=["admin"])
def list_keys(guard: GuardDep) -> KeyList:
    """Every stored key: ids, prefixes and scopes, never the keys."""
    return KeyList(keys=[KeyInfo.of(record) for record in guard.keys.list()])


@router.delete("/admin/keys/{key_id}", status_code=204, responses=ERROR_RESPONSES, tags=["admin"])
def revoke_key(key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")], guard: GuardDep) -> Response:
    """Revoke a key: it stops working on every replica at its next request."""
    if not guard.keys.revoke(key_id):
        raise ServiceError(404, "unknown_key", f"no API key with id {key_id!r}")
    return Response(status_code=204)


@router.get("/tenants", response_model=TenantList, responses=ERROR_RESPONSES, tags=["tenants"])
def list_tenants(
    principal: Annotated[Principal, Depends(get_principal)], runtime: Annotated[Runtime, Depends(get_runtime)]
) -> TenantList:
    """Tenants with a model, limited to the caller's scope."""
    if principal.admin:
        return TenantList(tenants=_all_tenants(runtime.store))
    store: Any = runtime.store
    return TenantList(tenants=[t for t in sorted(principal.tenants) if store.current_version(t) is not None])


def _all_tenants(store: Any) -> list[str]:
    listing = getattr(store, "tenant_ids", None)
    if listing is None:
        raise ServiceError(501, "not_supported", "this store cannot list tenants")
    return sorted(listing())[:_MAX_LISTED]
