"""Stale or corrupt stored models are never used as is; docs and health endpoints."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from app.config import Settings
from app.store import RedisStore
from app.web.app import create_app
from harness.ports import free_port
from tests.redis_server import StoredVersion
from tests.web.conftest import SUPPORT


def test_model_from_another_encoder_is_readapted(client: TestClient, redis_store: RedisStore) -> None:
    client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT})
    stored = StoredVersion(redis_store, "acme")
    meta = json.loads(stored.get("meta"))
    meta["encoder_fingerprint"] = "0123456789abcdef"
    stored.set("meta", json.dumps(meta))
    assert client.get("/tenants/acme").json()["status"] == "stale"

    predicted = client.post("/predict", json={"tenant_id": "acme", "texts": ["my card never came"]})
    assert predicted.status_code == 200
    assert predicted.json()["version"] == 2  # re-adapted from the stored support set, a new version
    assert predicted.json()["predictions"][0]["label"] == "card_arrival"
    described = client.get("/tenants/acme").json()
    assert described["status"] == "ready" and described["version"] == 2


def test_corrupt_head_is_never_used(client: TestClient, redis_store: RedisStore) -> None:
    client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT})
    stored = StoredVersion(redis_store, "acme")
    head = stored.get("head")
    stored.set("head", head[: len(head) // 2])
    assert client.get("/tenants/acme").json()["status"] == "corrupt"
    predicted = client.post("/predict", json={"tenant_id": "acme", "texts": ["refund me please"]})
    assert predicted.status_code == 200 and predicted.json()["version"] == 2
    assert predicted.json()["predictions"][0]["label"] == "refund"


def test_unrepairable_model_is_a_clear_409(client: TestClient, redis_store: RedisStore) -> None:
    client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT})
    StoredVersion(redis_store, "acme").set_many(
        {"head": b"garbage", "support": json.dumps([{"text": "a", "label": "x"}])}
    )
    response = client.post("/predict", json={"tenant_id": "acme", "texts": ["hi"]})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "model_unusable"


def test_docs_and_schema_list_every_endpoint(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = client.get("/openapi.json").json()
    core = {"/adapt", "/predict", "/tenants/{tenant_id}", "/healthz", "/readyz"}
    access = {"/tenants", "/admin/keys", "/admin/keys/{key_id}"}  # app/access/routes.py
    assert core | access <= set(schema["paths"])
    assert set(schema["paths"]["/tenants/{tenant_id}"]) == {"get", "delete"}
    components = schema["components"]["schemas"]
    for name in (
        "AdaptRequest",
        "AdaptResponse",
        "PredictRequest",
        "PredictResponse",
        "TenantInfo",
        "ErrorResponse",
        "HealthResponse",
        "ReadyResponse",
    ):
        assert components[name].get("examples"), f"{name} has no example"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["store"] == "redis" and len(ready["encoder_fingerprint"]) == 16


def test_unreachable_store_is_503_and_liveness_stays_up(real_model) -> None:
    settings = Settings(
        store="redis",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        redis_timeout_s=0.5,
        checkpoint="none",
        _env_file=None,
    )
    with TestClient(create_app(settings, model=real_model)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "store_unavailable"
        for path, body in (
            ("/adapt", {"tenant_id": "acme", "examples": SUPPORT}),
            ("/predict", {"tenant_id": "acme", "texts": ["hi"]}),
        ):
            response = client.post(path, json=body)
            assert response.status_code == 503 and response.json()["error"]["code"] == "store_unavailable"
