"""The service path with the real encoder and a real Redis."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.store import RedisStore
from tests.web.conftest import SUPPORT


def test_adapt_then_predict(client: TestClient) -> None:
    adapted = client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT})
    assert adapted.status_code == 200, adapted.text
    body = adapted.json()
    assert body["version"] == 1
    assert body["labels"] == ["card_arrival", "exchange_rate", "refund"]
    assert body["counts"] == {"card_arrival": 3, "exchange_rate": 3, "refund": 3}
    assert body["n_examples"] == 9 and body["timings_ms"]["total"] > 0

    predicted = client.post(
        "/predict",
        json={"tenant_id": "acme", "texts": ["my card never came", "give me a refund please"], "top_k": 3},
    )
    assert predicted.status_code == 200, predicted.text
    result = predicted.json()
    assert result["version"] == 1
    first, second = result["predictions"]
    assert first["label"] == "card_arrival" and second["label"] == "refund"
    for prediction in result["predictions"]:
        scores = [entry["score"] for entry in prediction["top_k"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert abs(sum(scores) - 1.0) < 1e-4
        assert prediction["score"] == scores[0] and 0 < prediction["score"] <= 1


def test_readapt_bumps_version_and_changes_labels(client: TestClient) -> None:
    client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT})
    smaller = [e for e in SUPPORT if e["label"] != "refund"]
    second = client.post("/adapt", json={"tenant_id": "acme", "examples": smaller}).json()
    assert second["version"] == 2 and second["labels"] == ["card_arrival", "exchange_rate"]
    predicted = client.post("/predict", json={"tenant_id": "acme", "texts": ["refund me"], "top_k": 5}).json()
    assert predicted["version"] == 2
    assert {entry["label"] for entry in predicted["predictions"][0]["top_k"]} == {"card_arrival", "exchange_rate"}


def test_declared_labels_set_the_output_order(client: TestClient) -> None:
    labels = ["refund", "exchange_rate", "card_arrival"]
    body = client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT, "labels": labels}).json()
    assert body["labels"] == labels


def test_inner_steps_override_is_recorded(client: TestClient) -> None:
    body = client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT, "inner_steps": 0}).json()
    assert body["inner_steps"] == 0
    assert client.get("/tenants/acme").json()["inner_steps"] == 0


def test_describe_and_delete(client: TestClient) -> None:
    client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT})
    info = client.get("/tenants/acme")
    assert info.status_code == 200
    described = info.json()
    assert described["status"] == "ready" and described["version"] == 1 and described["n_examples"] == 9
    assert 0 < described["head_bytes"] < 3 * 384 * (4 + 2) + 1024  # int8 weight and prototype rows, float16 scales
    assert client.delete("/tenants/acme").status_code == 204
    assert client.get("/tenants/acme").status_code == 404
    gone = client.post("/predict", json={"tenant_id": "acme", "texts": ["hi"]})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_tenant"
    assert client.delete("/tenants/acme").json()["error"]["code"] == "unknown_tenant"


def test_tenants_do_not_see_each_other(client: TestClient) -> None:
    client.post("/adapt", json={"tenant_id": "alpha", "examples": SUPPORT})
    other = [{"text": "sunny today", "label": "weather"}, {"text": "play a song", "label": "music"}]
    client.post("/adapt", json={"tenant_id": "beta", "examples": other})
    alpha = client.post("/predict", json={"tenant_id": "alpha", "texts": ["play a song"], "top_k": 3}).json()
    assert {e["label"] for e in alpha["predictions"][0]["top_k"]} == {"card_arrival", "exchange_rate", "refund"}
    beta = client.post("/predict", json={"tenant_id": "beta", "texts": ["play a song"]}).json()
    assert beta["predictions"][0]["label"] == "music"


def test_model_is_stored_in_redis_without_pickle(client: TestClient, redis_store: RedisStore) -> None:
    client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT})
    stored = redis_store.load("acme")
    assert stored is not None and stored.version == 1
    assert stored.meta["labels"] == ["card_arrival", "exchange_rate", "refund"]
    header_len = int.from_bytes(stored.head[:8], "little")
    assert stored.head[8:9] == b"{" and header_len < len(stored.head)  # safetensors, not pickle
    assert redis_store.load_support("acme") == SUPPORT
