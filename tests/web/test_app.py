"""The app factory: one lifespan configures logging once and builds the runtime, its services wired together."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.testclient import TestClient

from app.config import Settings
from app.ml.learner import InnerLoopParams
from app.web import metrics
from app.web.app import create_app


def test_one_lifespan_wires_the_services_together_and_configures_logging_once(tiny_encoder: Any) -> None:
    model = (tiny_encoder, InnerLoopParams.constant(2, 0.04, 10.0), None)
    app = create_app(Settings(checkpoint="none", log_level="warning", _env_file=None), model=model)
    with TestClient(app) as client:
        runtime = app.state.runtime
        prediction, adaptation = runtime.tiers.default.prediction, runtime.tiers.default.adaptation
        assert prediction.adaptation is adaptation  # stale heads are rebuilt by the runtime's own adaptation
        assert prediction.store is adaptation.store is runtime.store
        assert prediction.context.embedder is adaptation.context.embedder  # both embed through the micro-batcher
        assert runtime.batcher is not None and runtime.batcher.on_batch is metrics.observe_encoder_pass
        assert prediction.context.embed_async == runtime.batcher.embed_async
        ours = [h for h in logging.getLogger().handlers if getattr(h, "_fewshot_handler", False)]
        assert len(ours) == 1
        assert client.get("/readyz").json() == {
            "status": "ready",
            "encoder_fingerprint": tiny_encoder.fingerprint,
            "checkpoint": None,
            "store": "memory",
        }


def test_one_middleware_layer_runs_context_limit_and_access(tiny_encoder: Any) -> None:
    """Request context, body limit and access gate run as one ASGI layer, in that order: a request refused by the
    limit or the gate still gets its request id back and its access-log line counted."""
    model = (tiny_encoder, InnerLoopParams.constant(2, 0.04, 10.0), None)
    settings = Settings(checkpoint="none", log_level="warning", auth_enabled=True, max_body_bytes=2_000, _env_file=None)
    app = create_app(settings, model=model)
    assert [m.cls.__name__ for m in app.user_middleware] == ["EdgeMiddleware"]
    with TestClient(app) as client:
        huge = client.post("/predict", content=b"x" * 3_000, headers={"x-request-id": "big-1"})
        anonymous = client.post("/predict", json={"tenant_id": "t", "texts": ["hi"]}, headers={"x-request-id": "a-1"})
    assert (huge.status_code, huge.json()["error"]["code"], huge.headers["x-request-id"]) == (
        413,
        "payload_too_large",
        "big-1",
    )
    assert (anonymous.status_code, anonymous.json()["error"]["code"], anonymous.headers["x-request-id"]) == (
        401,
        "missing_api_key",
        "a-1",
    )
