"""The access gate: authenticate the bearer key, rate-limit it, and check admin and tenant scope.

Deny by default: every path except the public ones below needs a key when auth is enabled. The tenant
scope check is generic, so it covers every current and future route: a tenant named in the path
(`/tenants/{tenant_id}/...`), in the query (`?tenant_id=`) or in a JSON body (`{"tenant_id": ...}`) must be
in the key's scope. The body is read once (bounded by the body limit before it), parsed by `read_json` (the
route reuses that parse, so gate and route see one value) and replayed; a body it refuses (not JSON, over a cap,
naming `tenant_id` twice) gets the route's 422 answer. `app.web.edge.EdgeMiddleware` runs the gate in its one ASGI
layer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.types import Message, Receive, Scope, Send

from app.access.guard import ANONYMOUS, AccessGuard, Principal
from app.services.errors import ServiceError
from app.store.base import StoreUnavailable
from app.web import metrics
from app.web.errors import error_response
from app.web.json_body import read_json

log = logging.getLogger("fewshot.access")

PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/console"}
)
PUBLIC_PREFIXES = ("/docs-assets/", "/console-assets/")  # static pages: their API calls carry the key
ADMIN_PREFIX = "/admin/"
_TENANT_PATH = re.compile(r"^/tenants/([^/]+)(?:/|$)")


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


async def body_tenant(scope: Scope, body: bytes) -> tuple[bool, object]:
    """(present, value) of the top-level `tenant_id` of a JSON body; absent when it is not a JSON object. Raises
    `ServiceError` (422) for a body `read_json` refuses."""
    if not body:
        return False, None
    data = await read_json(scope, body)
    if isinstance(data, dict) and "tenant_id" in data:
        return True, data["tenant_id"]
    return False, None


def route_path(scope: Scope) -> str:
    """The path the router matches: without the `root_path` prefix a proxy may have added."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _client_identity(scope: Scope) -> str:
    client = scope.get("client")
    return f"addr:{client[0]}" if client else "addr:unknown"


class AccessGate:
    """`guard` returns the process's `AccessGuard` (built with the runtime, in the app's lifespan)."""

    def __init__(self, guard: Callable[[], AccessGuard]) -> None:
        self._guard = guard

    @property
    def guard(self) -> AccessGuard:
        return self._guard()

    async def admit(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """The `receive` to serve the request with (its body replayed when the gate read it), or None when the
        gate answered it itself (401, 403, 422, 429, 503)."""
        if is_public(route_path(scope)):
            return receive
        try:
            return await self._checked(scope, receive, send)
        except StoreUnavailable as exc:
            metrics.series(metrics.STORE_ERRORS, "access").inc()
            log.warning("access store unavailable: %s", exc)
            await error_response(503, "store_unavailable", "the key store is unreachable; retry shortly")(
                scope, receive, send
            )
            return None

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        async def deny(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
            metrics.series(metrics.ACCESS_DENIED, code).inc()
            response = error_response(status, code, message)
            response.headers.update(headers or {})
            await response(scope, receive, send)

        principal = ANONYMOUS
        if self.guard.enabled:
            key = _bearer(scope)
            if key is None:
                await deny(401, "missing_api_key", "send `Authorization: Bearer <key>`", {"WWW-Authenticate": "Bearer"})
                return None
            found = self.guard.authenticate(key)
            if found is None:
                await deny(401, "invalid_api_key", "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
                return None
            principal = found
        scope.setdefault("state", {})["principal"] = principal

        identity = f"key:{principal.key_id}" if self.guard.enabled else _client_identity(scope)
        decision = self.guard.hit(identity)
        if decision is not None and not decision.allowed:
            await deny(
                429,
                "rate_limited",
                f"rate limit exceeded; retry in {decision.retry_after_s} s",
                {"Retry-After": str(decision.retry_after_s)},
            )
            return None

        path = route_path(scope)
        if (path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/")) and not principal.admin:
            await deny(403, "admin_required", "this endpoint needs an admin key")
            return None
        if principal.admin:
            return receive
        return await self._scoped(scope, receive, principal, deny)

    async def _scoped(self, scope: Scope, receive: Receive, principal: Principal, deny: Any) -> Receive | None:
        named: list[object] = []
        match = _TENANT_PATH.match(route_path(scope))
        if match:
            named.append(match.group(1))
        named.extend(parse_qs(scope.get("query_string", b"").decode("latin-1")).get("tenant_id", []))

        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            present, value = await body_tenant(scope, body)
        except ServiceError as exc:
            await deny(exc.status, exc.code, exc.message)
            return None
        if present:
            named.append(value)

        for tenant in named:
            if not isinstance(tenant, str) or not principal.allows(tenant):
                await deny(403, "forbidden_tenant", f"this key may not access tenant {str(tenant)[:64]!r}")
                return None

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
