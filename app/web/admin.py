"""Admin endpoints for API keys (the access middleware lets only admin keys reach `/admin/`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.services.errors import ServiceError
from app.web import replies
from app.web.deps import Guard
from app.web.json_route import JsonBodyRoute
from app.web.schemas import ERROR_RESPONSES, KeyCreate, KeyCreated, KeyList

router = APIRouter(route_class=JsonBodyRoute)


@router.post("/admin/keys", status_code=201, response_model=KeyCreated, responses=ERROR_RESPONSES, tags=["admin"])
def create_key(body: KeyCreate, guard: Guard) -> KeyCreated:
    """Create an API key scoped to tenants (or an admin key). The key is in this response only."""
    key, record = guard.create_key(body.name, body.admin, list(body.tenants))
    return replies.key_created(key, record)


@router.get("/admin/keys", response_model=KeyList, tags=["admin"])
def list_keys(guard: Guard) -> KeyList:
    """Every stored key: ids, prefixes and scopes, never the keys."""
    return KeyList(keys=[replies.key_info(record) for record in guard.keys.list()])


@router.delete("/admin/keys/{key_id}", status_code=204, responses=ERROR_RESPONSES, tags=["admin"])
def revoke_key(key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")], guard: Guard) -> Response:
    """Revoke a key: it stops working on every replica at its next request."""
    if not guard.keys.revoke(key_id):
        raise ServiceError(404, "unknown_key", f"no API key with id {key_id!r}")
    return Response(status_code=204)
