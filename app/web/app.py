"""`create_app(settings)`: the FastAPI application, with one lifespan that configures logging once, builds the
runtime (`app.bootstrap`) and closes it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.access.guard import AccessGuard
from app.bootstrap import Runtime, build_runtime
from app.config import Settings
from app.ml.loading import LoadedModel
from app.web import metrics
from app.web.admin import router as admin_router
from app.web.console import install_console
from app.web.docs import install_docs
from app.web.edge import EdgeMiddleware
from app.web.errors import install_error_handlers
from app.web.heavy import HeavyWork
from app.web.json_body import BodyCaps
from app.web.logs import configure_logging
from app.web.routes import router

log = logging.getLogger("fewshot")

DESCRIPTION = """
Few-shot text classification for many tenants. Post a handful of labeled examples per label to
**/adapt** and get a classifier in a fraction of a second; send texts to **/predict** and get labels
with probabilities. One meta-trained sentence encoder is shared by every tenant; each tenant owns
only a small adapted head (a few KB), stored with its support set.

Errors always look like `{"error": {"code": "...", "message": "..."}}`.
"""

OPEN_WARNING = (
    "AUTHENTICATION IS DISABLED (FEWSHOT_AUTH_ENABLED=false): anyone who can reach this port can read, adapt, "
    "predict with and delete every tenant. Fine for local use; set FEWSHOT_AUTH_ENABLED=true and "
    "FEWSHOT_ADMIN_KEY_SHA256 in any shared deployment."
)


def create_app(
    settings: Settings, model: LoadedModel | None = None, tier_models: dict[str, LoadedModel] | None = None
) -> FastAPI:
    """Build the app. `model` (encoder, inner params, checkpoint: the default tier's) and `tier_models` (by tier
    name) let tests reuse loaded encoders."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_format, settings.log_level)
        runtime = build_runtime(settings, model, tier_models)
        for batcher in runtime.batchers:
            batcher.on_batch = metrics.observe_encoder_pass
        _warn_about_access(runtime.guard)
        app.state.runtime = runtime
        app.openapi()  # the schema (and the path templates the request context labels with) is built here, not
        # on the event loop during the first request refused before routing
        app.state.heavy = HeavyWork(settings.heavy_slots, settings.heavy_per_tenant, settings.heavy_queue_per_tenant)
        try:
            yield
        finally:
            runtime.close()

    app = FastAPI(
        title="Few-shot classification service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # offline Swagger UI / ReDoc: app.web.docs
        redoc_url=None,
    )
    # request bodies' caps, read by app.web.json_body.read_json (/suggest's pool: max_examples, as its service's)
    app.state.body_caps = BodyCaps(
        settings.max_examples, settings.max_labels, settings.max_texts, max_pool=settings.max_examples
    )
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(admin_router)
    install_docs(app, settings.auth_enabled)
    install_console(app)
    if settings.metrics_enabled:
        app.add_api_route("/metrics", metrics.metrics_endpoint, methods=["GET"], include_in_schema=False)

    def guard() -> AccessGuard:
        runtime: Runtime = app.state.runtime
        return runtime.guard

    # one layer: request context -> body limit -> access gate -> routes
    app.add_middleware(
        EdgeMiddleware,
        fastapi_app=app,
        guard=guard,
        max_body_bytes=settings.max_body_bytes,
        log_payloads=settings.log_payloads,
    )
    return app


def _warn_about_access(guard: AccessGuard) -> None:
    if not guard.enabled:
        log.warning(OPEN_WARNING)
    elif not guard.has_bootstrap_admin:
        log.warning("auth enabled without FEWSHOT_ADMIN_KEY(_SHA256): only keys already in the store work")
