"""Prometheus metrics (process-wide registry) and the `/metrics` endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

REQUESTS = Counter("fewshot_http_requests_total", "HTTP requests by route and status.", ["method", "route", "status"])
LATENCY = Histogram(
    "fewshot_http_request_duration_seconds",
    "HTTP request latency by route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OPERATION_SECONDS = Histogram(
    "fewshot_operation_seconds",
    "Stages of /adapt and /predict (from the services' own timings).",
    ["operation", "stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ENCODER_BATCH = Histogram(
    "fewshot_encoder_batch_texts",
    "Texts handed to the encoder per call.",
    ["operation"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
STORE_ERRORS = Counter("fewshot_store_errors_total", "Store unavailable errors (Redis down or timing out).", ["source"])
ACCESS_DENIED = Counter("fewshot_access_denied_total", "Requests refused before the routes, by error code.", ["code"])
TENANTS_CACHED = Gauge("fewshot_tenants_cached", "Decoded tenant heads held in this process's LRU.")


def observe_timings(operation: str, timings_ms: Mapping[str, float]) -> None:
    for stage, ms in timings_ms.items():
        OPERATION_SECONDS.labels(operation=operation, stage=stage).observe(ms / 1000.0)


class InstrumentedAdaptation:
    """Proxy around `AdaptationService` recording batch sizes and stage timings; everything else passes through."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def adapt(self, tenant_id: str, examples: list[Any], *args: Any, **kwargs: Any) -> Any:
        ENCODER_BATCH.labels(operation="adapt").observe(len(examples))
        result = self._inner.adapt(tenant_id, examples, *args, **kwargs)
        observe_timings("adapt", getattr(result, "timings_ms", {}) or {})
        return result


class InstrumentedPrediction:
    """Proxy around `PredictionService`, as above."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def predict(self, tenant_id: str, texts: list[str], *args: Any, **kwargs: Any) -> Any:
        ENCODER_BATCH.labels(operation="predict").observe(len(texts))
        result = self._inner.predict(tenant_id, texts, *args, **kwargs)
        observe_timings("predict", getattr(result, "timings_ms", {}) or {})
        return result


def instrument_runtime(runtime: Any) -> None:
    """Wrap the services the routes call (idempotent)."""
    if not isinstance(runtime.adaptation, InstrumentedAdaptation):
        runtime.adaptation = InstrumentedAdaptation(runtime.adaptation)
    if not isinstance(runtime.prediction, InstrumentedPrediction):
        runtime.prediction = InstrumentedPrediction(runtime.prediction)
    batcher = getattr(runtime, "batcher", None)
    if batcher is not None:  # the merged passes the encoder really runs (several requests, several tenants)
        batcher.on_batch = ENCODER_BATCH.labels(operation="encoder_pass").observe


def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition of this process."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        TENANTS_CACHED.set(len(runtime.cache))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
