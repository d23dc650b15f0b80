"""Prometheus metrics (process-wide registry) and the `/metrics` endpoint.

Label values come from closed sets only (methods, route templates, statuses, stage names, error codes), so no
request can add a series.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

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


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
UNMATCHED_ROUTE = "unmatched"


def method_label(method: str) -> str:
    """The request's method as a label value from a closed set (invented methods collapse into `other`)."""
    return method if method in HTTP_METHODS else OTHER_METHOD


@lru_cache(maxsize=4096)
def series(metric: Counter | Histogram, *values: str) -> Counter | Histogram:
    """`metric.labels(*values)`, looked up once per label set (label values come from closed sets, so the cache
    stays small); `labels()` itself validates and hashes on every call, ~5 us each, several per request."""
    return metric.labels(*values)


def observe_operation(operation: str, n_texts: int, timings_ms: Mapping[str, float]) -> None:
    """Record one /adapt or /predict: texts handed to the service and the service's own stage timings."""
    series(ENCODER_BATCH, operation).observe(n_texts)
    for stage, ms in timings_ms.items():
        series(OPERATION_SECONDS, operation, stage).observe(ms / 1000.0)


def observe_encoder_pass(n_texts: int) -> None:
    """The merged passes the encoder really runs (several requests, several tenants)."""
    series(ENCODER_BATCH, "encoder_pass").observe(n_texts)


def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition of this process."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        TENANTS_CACHED.set(len(runtime.cache))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
