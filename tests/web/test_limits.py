"""Body size (413, streamed bodies included) and per-key rate limits (429 + Retry-After, counted in Redis)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from fastapi.testclient import TestClient

from app.access.ratelimit import MemoryRateLimiter
from app.store import RedisStore
from tests.web.conftest import ADMIN, bearer


def big_body(n_bytes: int) -> bytes:
    return json.dumps({"tenant_id": "acme", "texts": ["x" * n_bytes]}).encode()


def chunks(body: bytes, size: int = 512) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_declared_and_streamed_bodies_over_the_limit_get_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=4096)
    headers = ADMIN | {"content-type": "application/json"}
    declared = client.post("/predict", headers=headers, content=big_body(8000))
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"

    streamed = client.post("/predict", headers=headers, content=chunks(big_body(8000)))
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "payload_too_large"

    lying = client.post("/predict", headers=headers | {"content-length": "100"}, content=big_body(8000))
    assert lying.status_code in (400, 413)  # never a 500; h11 may refuse the mismatch itself

    small = client.post("/predict", headers=headers, content=chunks(big_body(100)))
    assert small.status_code == 404 and small.json()["error"]["code"] == "unknown_tenant"


def test_streamed_body_limit_also_applies_to_scoped_keys(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=4096)
    key = client.post("/admin/keys", headers=ADMIN, json={"tenants": ["acme"]}).json()["key"]
    headers = bearer(key) | {"content-type": "application/json"}
    response = client.post("/predict", headers=headers, content=chunks(big_body(8000)))
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def test_rate_limit_per_key_in_redis(make_client: Callable[..., TestClient], redis_store: RedisStore) -> None:
    client = make_client(rate_limit_requests=3, rate_limit_window_s=60)
    key_a = bearer(client.post("/admin/keys", headers=ADMIN, json={"tenants": ["a"]}).json()["key"])
    key_b = bearer(client.post("/admin/keys", headers=ADMIN, json={"tenants": ["b"]}).json()["key"])
    assert [client.get("/tenants", headers=key_a).status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get("/tenants", headers=key_a)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert client.get("/tenants", headers=key_b).status_code == 200  # per key
    counters = list(redis_store._client.scan_iter(match=f"{redis_store._prefix}:ratelimit:*"))
    assert counters and all(0 < redis_store._client.ttl(name) <= 61 for name in counters)


def test_rate_limit_in_memory_without_auth(make_client: Callable[..., TestClient]) -> None:
    client = make_client(store="memory", auth_enabled=False, rate_limit_requests=2)
    assert [client.get("/tenants").status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/healthz").status_code == 200  # public routes are never limited


def test_memory_limiter_windows() -> None:
    limiter = MemoryRateLimiter(limit=2, window_s=3600)
    decisions = [limiter.hit("k") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False] and decisions[-1].remaining == 0
    assert limiter.hit("other").allowed
