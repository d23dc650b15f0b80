"""`create_app(settings)`: the FastAPI application; the encoder loads once in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.errors import install_error_handlers
from app.api.routes import router
from app.config import Settings
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams
from app.ops.install import install_ops
from app.services.runtime import build_runtime

DESCRIPTION = """
Few-shot text classification for many tenants. Post a handful of labeled examples per label to
**/adapt** and get a classifier in a fraction of a second; send texts to **/predict** and get labels
with probabilities. One meta-trained sentence encoder is shared by every tenant; each tenant owns
only a small adapted head (a few KB), stored with its support set.

Errors always look like `{"error": {"code": "...", "message": "..."}}`.
"""


def create_app(
    settings: Settings | None = None,
    model: tuple[SentenceEncoder, InnerLoopParams, str | None] | None = None,
) -> FastAPI:
    """Build the app. `model` (encoder, inner params, checkpoint) lets tests reuse one loaded encoder."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logging.basicConfig(level=settings.log_level.upper())
        app.state.runtime = build_runtime(settings, model)
        try:
            yield
        finally:
            app.state.runtime.close()

    app = FastAPI(
        title="Few-shot classification service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # offline Swagger UI / ReDoc: app.ops.docs
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(router)
    install_ops(app, settings)  # auth, limits, metrics, JSON logs, offline docs
    return app
