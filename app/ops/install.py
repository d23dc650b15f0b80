"""`install_ops(app, settings)`: wire access control, limits, metrics, logs and offline docs into an app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.access.guard import AccessGuard
from app.access.middleware import AccessMiddleware
from app.access.routes import router as access_router
from app.config import Settings
from app.ops import metrics
from app.ops.body_limit import BodySizeLimitMiddleware
from app.ops.docs import install_docs
from app.ops.logging import configure_logging
from app.ops.middleware import RequestContextMiddleware
from app.store.base import StoreUnavailable

log = logging.getLogger("fewshot")

OPEN_WARNING = (
    "AUTHENTICATION IS DISABLED (FEWSHOT_AUTH_ENABLED=false): anyone who can reach this port can read, adapt, "
    "predict with and delete every tenant. Fine for local use; set FEWSHOT_AUTH_ENABLED=true and "
    "FEWSHOT_ADMIN_KEY_SHA256 in any shared deployment."
)


def install_ops(app: FastAPI, settings: Settings) -> None:
    """Call once in `create_app`, after the routers and error handlers; the app needs docs_url=None."""
    guard = AccessGuard(settings)
    app.state.access_guard = guard
    app.include_router(access_router)
    install_docs(app, settings.auth_enabled)
    if settings.metrics_enabled:
        app.add_api_route("/metrics", metrics.metrics_endpoint, methods=["GET"], include_in_schema=False)
    _count_store_errors(app)

    # added innermost first: RequestContext -> BodySizeLimit -> Access -> routes
    app.add_middleware(AccessMiddleware, guard=guard)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, fastapi_app=app, log_payloads=settings.log_payloads)
    _wrap_lifespan(app, settings, guard)


def _count_store_errors(app: FastAPI) -> None:
    handler = app.exception_handlers.get(StoreUnavailable)

    async def counted(request: Request, exc: Exception) -> Any:
        metrics.STORE_ERRORS.labels(source="tenant_store").inc()
        if handler is None:
            return JSONResponse({"error": {"code": "store_unavailable", "message": str(exc)}}, status_code=503)
        return await handler(request, exc)

    app.add_exception_handler(StoreUnavailable, counted)


def _wrap_lifespan(app: FastAPI, settings: Settings, guard: AccessGuard) -> None:
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        configure_logging(settings)
        if not settings.auth_enabled:
            log.warning(OPEN_WARNING)
        elif not guard.has_bootstrap_admin:
            log.warning("auth enabled without FEWSHOT_ADMIN_KEY(_SHA256): only keys already in the store work")
        async with inner(application) as state:
            runtime = getattr(application.state, "runtime", None)
            if runtime is not None:
                metrics.instrument_runtime(runtime)
            try:
                yield state
            finally:
                guard.close()

    app.router.lifespan_context = lifespan
