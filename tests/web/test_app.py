"""The app factory: one lifespan configures logging once and builds the runtime with plain, typed services."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.testclient import TestClient

from app.config import Settings
from app.ml.learner import InnerLoopParams
from app.services.adaptation import AdaptationService
from app.services.prediction import PredictionService
from app.web import metrics
from app.web.app import create_app


def test_one_lifespan_builds_plain_services_and_configures_logging_once(tiny_encoder: Any) -> None:
    model = (tiny_encoder, InnerLoopParams.constant(2, 0.04, 10.0), None)
    app = create_app(Settings(checkpoint="none", log_level="warning", _env_file=None), model=model)
    with TestClient(app) as client:
        runtime = app.state.runtime
        assert type(runtime.adaptation) is AdaptationService and type(runtime.prediction) is PredictionService
        assert runtime.batcher is not None and runtime.batcher.on_batch is metrics.observe_encoder_pass
        ours = [h for h in logging.getLogger().handlers if getattr(h, "_fewshot_handler", False)]
        assert len(ours) == 1
        assert client.get("/readyz").json() == {
            "status": "ready",
            "encoder_fingerprint": tiny_encoder.fingerprint,
            "checkpoint": None,
            "store": "memory",
        }
