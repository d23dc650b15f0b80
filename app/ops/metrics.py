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


class Instrumented:
    """Proxy around a service recording, for its `operation` method ("adapt" or "predict"), the number of texts
    (the call's second argument) and the result's stage timings; everything else passes through."""

    def __init__(self, inner: Any, operation: str) -> None:
        self._inner = inner
        self._operation = operation

    def __getattr__(self, name: str) -> Any:
        if name == self._operation:
            return self._instrumented
        return getattr(self._inner, name)

    def _instrumented(self, tenant_id: str, texts: list[Any], *args: Any, **kwargs: Any) -> Any:
        ENCODER_BATCH.labels(operation=self._operation).observe(len(texts))
        result = getattr(self._inner, self._operation)(tenant_id, texts, *args, **kwargs)
        observe_timings(self._operation, getattr(result, "timings_ms", {}) or {})
        return result


def instrument_runtime(runtime: Any) -> None:
    """Wrap the services the routes call (idempotent)."""
    if not isinstance(runtime.adaptation, Instrumented):
        runtime.adaptation = Instrumented(runtime.adaptation, "adapt")
    if not isinstance(runtime.prediction, Instrumented):
        runtime.prediction = Instrumented(runtime.prediction, "predict")
    batcher = getattr(runtime, "batcher", None)
    if batcher is not None:  # the merged passes the encoder really runs (several requests, several tenants)
        batcher.on_batch = ENCODER_BATCH.labels(operation="encoder_pass").observe


def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition of this process."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        TENANTS_CACHED.set(len(runtime.cache))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
