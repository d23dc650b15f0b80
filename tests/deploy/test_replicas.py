"""The compose topology without Docker: one real redis-server, two `fewshot serve` replicas, auth on.

Keys, models and versions live in Redis only; each replica's cache of decoded heads is validated by version.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from harness.redis_proc import throwaway_redis
from harness.server_proc import fewshot_server
from tests.web.conftest import CARDS, FX, REFUND, support

ADMIN_KEY = "fsk_replica-test-admin"
TEXTS = ["where is my card", "refund please", "euro rate today", "I want my money back"]


@pytest.fixture(scope="module")
def replicas() -> Iterator[tuple[str, str]]:
    env = {
        "FEWSHOT_CHECKPOINT": "none",
        "FEWSHOT_AUTH_ENABLED": "true",
        "FEWSHOT_ADMIN_KEY": ADMIN_KEY,
        "FEWSHOT_INNER_STEPS": "10",
        "FEWSHOT_MAX_BODY_BYTES": "65536",
        "FEWSHOT_LOG_FORMAT": "json",
        "FEWSHOT_TORCH_THREADS": "1",
    }
    with ExitStack() as stack:
        redis_url = stack.enter_context(throwaway_redis(appendonly=True))
        first = stack.enter_context(fewshot_server(redis_url, prefix="replicas", extra_env=env))
        second = stack.enter_context(fewshot_server(redis_url, prefix="replicas", extra_env=env))
        yield first, second


@pytest.mark.slow
def test_two_replicas_share_keys_models_and_versions(replicas: tuple[str, str]) -> None:
    first, second = replicas
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=first, timeout=60) as one, httpx.Client(base_url=second, timeout=60) as two:
        created = one.post("/admin/keys", headers=admin, json={"name": "acme", "tenants": ["acme"]})
        assert created.status_code == 201
        key = {"Authorization": f"Bearer {created.json()['key']}"}

        v1 = one.post(
            "/adapt", headers=key, json={"tenant_id": "acme", "examples": support(("cards", CARDS), ("fx", FX))}
        )
        assert v1.status_code == 200, v1.text
        predict = {"tenant_id": "acme", "texts": TEXTS, "top_k": 2}
        via_one, via_two = (c.post("/predict", headers=key, json=predict).json() for c in (one, two))
        assert via_one["version"] == via_two["version"] == v1.json()["version"]
        for a, b in zip(via_one["predictions"], via_two["predictions"], strict=True):
            assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-6)

        # re-adapt through the second replica: the first serves the new version on its very next request
        examples = support(("cards", CARDS), ("fx", FX), ("refund", REFUND))
        v2 = two.post("/adapt", headers=key, json={"tenant_id": "acme", "examples": examples})
        assert v2.status_code == 200 and v2.json()["version"] > v1.json()["version"]
        after = one.post("/predict", headers=key, json=predict).json()
        assert after["version"] == v2.json()["version"]
        assert [p["label"] for p in after["predictions"]][:2] == ["cards", "refund"]

        # scope, revocation and limits hold on every replica
        denied = two.post("/predict", headers=key, json={"tenant_id": "other", "texts": ["x"]})
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden_tenant"
        assert two.delete(f"/admin/keys/{created.json()['key_id']}", headers=admin).status_code == 204
        assert one.get("/tenants", headers=key).status_code == 401

        def chunked() -> Iterator[bytes]:
            yield b'{"tenant_id": "acme", "texts": ["'
            for _ in range(100):
                yield b"x" * 1024
            yield b'"]}'

        too_big = one.post("/predict", headers=admin | {"content-type": "application/json"}, content=chunked())
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
        assert too_big.request.headers.get("transfer-encoding") == "chunked"  # no Content-Length to trust
        assert 'route="/predict",status="200"' in one.get("/metrics").text
