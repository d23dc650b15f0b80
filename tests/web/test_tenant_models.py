"""Out-of-scope answers, append/remove, label descriptions, versions, pinning and rollback."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.store import RedisStore
from tests.web.conftest import SUPPORT

OFF_TOPIC = "who won the football world cup in 1998"


def _adapt(client: TestClient, **body: object) -> dict:
    response = client.post("/adapt", json={"tenant_id": "acme", **body})
    assert response.status_code == 200, response.text
    return response.json()


def _predict(client: TestClient, texts: list[str], **body: object) -> dict:
    response = client.post("/predict", json={"tenant_id": "acme", "texts": texts, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_out_of_scope_text_gets_null_label(client: TestClient) -> None:
    adapted = _adapt(client, examples=SUPPORT)
    assert adapted["oos_threshold"] is not None and -1 < adapted["oos_threshold"] < 1
    result = _predict(client, [OFF_TOPIC, "my card never arrived"])
    off, on = result["predictions"]
    assert off["out_of_scope"] is True and off["label"] is None and off["oos_score"] < result["oos_threshold"]
    assert off["top_k"][0]["label"] in {"card_arrival", "exchange_rate", "refund"}  # ranking still given
    assert on["out_of_scope"] is False and on["label"] == "card_arrival"


def test_out_of_scope_threshold_can_be_overridden(client: TestClient) -> None:
    _adapt(client, examples=SUPPORT)
    never = _predict(client, [OFF_TOPIC], oos_threshold=-1)
    assert never["oos_threshold"] == -1 and never["predictions"][0]["label"] is not None
    always = _predict(client, ["my card never arrived"], oos_threshold=1)
    assert always["predictions"][0]["out_of_scope"] is True


def test_append_adds_examples_and_labels_reusing_embeddings(client: TestClient, redis_store: RedisStore) -> None:
    first = _adapt(client, examples=SUPPORT)
    new = [
        {"text": "I lost my phone and need to block my card", "label": "lost_card"},
        {"text": "my card was stolen", "label": "lost_card"},
    ]
    second = _adapt(client, examples=new, mode="append")
    assert second["version"] == first["version"] + 1
    assert second["labels"] == ["card_arrival", "exchange_rate", "refund", "lost_card"]
    assert second["counts"]["lost_card"] == 2 and second["n_examples"] == 11
    assert second["n_embedded"] == 3  # the 2 new examples and the new label's name; the rest came from the cache
    assert len(redis_store.load_support("acme") or []) == 11
    assert _predict(client, ["someone stole my card"])["predictions"][0]["label"] == "lost_card"
    again = _adapt(client, examples=new, mode="append")  # exact duplicates are not added twice
    assert again["n_examples"] == 11 and again["n_embedded"] == 0


def test_append_can_remove_labels(client: TestClient) -> None:
    _adapt(client, examples=SUPPORT)
    removed = _adapt(client, examples=[], mode="append", remove_labels=["refund"])
    assert removed["labels"] == ["card_arrival", "exchange_rate"] and removed["n_examples"] == 6
    top = _predict(client, ["refund please"], top_k=5, oos_threshold=-1)["predictions"][0]["top_k"]
    assert {entry["label"] for entry in top} == {"card_arrival", "exchange_rate"}


def test_append_to_a_new_tenant_creates_it(client: TestClient) -> None:
    assert _adapt(client, examples=SUPPORT, mode="append")["version"] == 1


def test_bad_append_options_change_nothing(client: TestClient, redis_store: RedisStore) -> None:
    _adapt(client, examples=SUPPORT)
    for body, code in (
        ({"examples": SUPPORT, "remove_labels": ["refund"]}, "invalid_option"),
        ({"examples": [], "mode": "append", "remove_labels": ["ghost"]}, "unknown_label"),
        ({"examples": [], "mode": "append", "remove_labels": ["refund", "exchange_rate"]}, "too_few_labels"),
        ({"examples": [], "mode": "sideways"}, "validation_error"),
    ):
        response = client.post("/adapt", json={"tenant_id": "acme", **body})
        assert response.status_code == 422 and response.json()["error"]["code"] == code, response.text
    assert redis_store.current_version("acme") == 1


def test_label_descriptions_are_extra_examples(client: TestClient, redis_store: RedisStore) -> None:
    descriptions = {"card_arrival": "card arrival: where is my new card", "top_up": "top up: add money to account"}
    adapted = _adapt(client, examples=SUPPORT, label_descriptions=descriptions)
    assert adapted["labels"] == ["card_arrival", "exchange_rate", "refund", "top_up"]  # top_up: description only
    assert adapted["n_descriptions"] == 2 and adapted["counts"]["top_up"] == 0
    stored = redis_store.load_support("acme") or []
    assert {"text": descriptions["top_up"], "label": "top_up", "description": True} in stored
    label = _predict(client, ["how do I add money to my account"], oos_threshold=-1)["predictions"][0]["label"]
    assert label == "top_up"
    empty = client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT, "label_descriptions": {"x": " "}})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_text"


def test_versions_pinning_and_rollback(client: TestClient) -> None:
    _adapt(client, examples=SUPPORT)
    _adapt(client, examples=[e for e in SUPPORT if e["label"] != "refund"])
    _adapt(client, examples=[e for e in SUPPORT if e["label"] != "card_arrival"])
    listing = client.get("/tenants/acme/versions").json()
    assert listing["current"] == 3 and [v["version"] for v in listing["versions"]] == [3, 2, 1]
    assert listing["versions"][2]["labels"] == ["card_arrival", "exchange_rate", "refund"]
    assert all(v["head_bytes"] > 0 and v["n_examples"] > 0 for v in listing["versions"])

    pinned = _predict(client, ["my card never came"], version=1, top_k=3)
    assert pinned["version"] == 1 and len(pinned["predictions"][0]["top_k"]) == 3
    assert _predict(client, ["my card never came"], top_k=3)["version"] == 3

    rolled = client.post("/tenants/acme/rollback", json={"version": 1})
    assert rolled.status_code == 200 and rolled.json() == {"tenant_id": "acme", "version": 4, "restored_from": 1}
    current = _predict(client, ["my card never came"], top_k=3)
    assert current["version"] == 4
    assert {e["label"] for e in current["predictions"][0]["top_k"]} == {"card_arrival", "exchange_rate", "refund"}
    assert client.get("/tenants/acme").json()["version"] == 4


def test_unknown_versions(client: TestClient) -> None:
    _adapt(client, examples=SUPPORT)
    for response in (
        client.post("/tenants/acme/rollback", json={"version": 99}),
        client.post("/predict", json={"tenant_id": "acme", "texts": ["x"], "version": 99}),
    ):
        assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_version"
    assert client.get("/tenants/nobody/versions").json()["error"]["code"] == "unknown_tenant"
    assert client.post("/tenants/nobody/rollback", json={"version": 1}).json()["error"]["code"] == "unknown_tenant"
    bad = client.post("/tenants/acme/rollback", json={"version": 0})
    assert bad.status_code == 422
