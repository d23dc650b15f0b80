"""Route dependencies: each service (and the caller) on its own, from the runtime built in the lifespan.

All `async`: each only reads an attribute, and FastAPI runs a plain `def` dependency in a worker thread, a
thread-pool hop per request for nothing."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.access.guard import AccessGuard, Principal
from app.bootstrap import Readiness, Runtime
from app.services.errors import ServiceError
from app.services.tenants import TenantService
from app.services.tiers import Tiers
from app.services.unlabeled import UnlabeledService
from app.store import TenantStore
from app.web.heavy import HeavyWork


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_tenants(request: Request) -> TenantService:
    return _runtime(request).tenants


async def get_tiers(request: Request) -> Tiers:
    return _runtime(request).tiers


async def get_pools(request: Request) -> UnlabeledService:
    return _runtime(request).pools


async def get_store(request: Request) -> TenantStore:
    return _runtime(request).store


async def get_readiness(request: Request) -> Readiness:
    return _runtime(request).readiness


async def get_guard(request: Request) -> AccessGuard:
    return _runtime(request).guard


async def get_heavy(request: Request) -> HeavyWork:
    return request.app.state.heavy


async def get_principal(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if principal is None:  # only when the access middleware was not installed
        raise ServiceError(401, "missing_api_key", "no authenticated caller")
    return principal


Tenants = Annotated[TenantService, Depends(get_tenants)]
ServedTiers = Annotated[Tiers, Depends(get_tiers)]
Store = Annotated[TenantStore, Depends(get_store)]
Pools = Annotated[UnlabeledService, Depends(get_pools)]
ReadinessInfo = Annotated[Readiness, Depends(get_readiness)]
Guard = Annotated[AccessGuard, Depends(get_guard)]
Heavy = Annotated[HeavyWork, Depends(get_heavy)]
Caller = Annotated[Principal, Depends(get_principal)]
