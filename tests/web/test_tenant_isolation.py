"""Tenants are strangers: malformed or invisible text is a clear 422, and no answer depends on another
tenant's stored data (the support-embedding cache is scoped per tenant)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.store import RedisStore
from tests.web.conftest import SUPPORT, assert_error

LONE_SURROGATE = "x\ud800"
INVISIBLE = ["\u200b", "\ufeff", "\u202e\u202c", "\u200b \u200d\u2060", "\u3164"]


def post_raw(client: TestClient, path: str, payload: dict[str, Any]) -> httpx.Response:
    """POST `payload` as ASCII JSON: lone surrogates travel as valid `\\ud800` escapes, as hostile clients send them."""
    return client.post(path, content=json.dumps(payload).encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda body: body["examples"][0].update(text=LONE_SURROGATE), "invalid_text"),
        (lambda body: body["examples"][0].update(label=LONE_SURROGATE), "invalid_label"),
        (lambda body: body.update(label_descriptions={"refund": LONE_SURROGATE}), "invalid_text"),
        (lambda body: body.update(label_descriptions={LONE_SURROGATE: "a description"}), "invalid_label"),
        (lambda body: body.update(labels=[LONE_SURROGATE, "refund"]), "invalid_label"),
        (lambda body: body.update(mode="append", remove_labels=[LONE_SURROGATE]), "invalid_label"),
    ],
)
def test_adapt_with_text_that_is_not_unicode_is_a_422_and_stores_nothing(
    client: TestClient, redis_store: RedisStore, change: Any, code: str
) -> None:
    body: dict[str, Any] = {"tenant_id": "acme", "examples": [dict(example) for example in SUPPORT]}
    change(body)
    assert_error(post_raw(client, "/adapt", body), 422, code)
    assert redis_store.load("acme") is None


def test_predict_with_text_that_is_not_unicode_is_a_422(client: TestClient) -> None:
    assert client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT}).status_code == 200
    response = post_raw(client, "/predict", {"tenant_id": "acme", "texts": ["where is my card", LONE_SURROGATE]})
    assert_error(response, 422, "invalid_text")
    assert "texts[1]" in response.json()["error"]["message"]


@pytest.mark.parametrize("blank", INVISIBLE)
def test_invisible_only_texts_and_labels_count_as_empty(client: TestClient, blank: str) -> None:
    examples = [dict(example) for example in SUPPORT]
    examples[0]["text"] = blank
    assert_error(client.post("/adapt", json={"tenant_id": "acme", "examples": examples}), 422, "empty_text")
    examples = [dict(example) for example in SUPPORT]
    examples[0]["label"] = blank
    assert_error(client.post("/adapt", json={"tenant_id": "acme", "examples": examples}), 422, "empty_label")
    assert client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT}).status_code == 200
    assert_error(client.post("/predict", json={"tenant_id": "acme", "texts": [blank]}), 422, "empty_text")


def test_text_with_invisible_characters_around_visible_ones_is_accepted(client: TestClient) -> None:
    assert client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT}).status_code == 200
    response = client.post("/predict", json={"tenant_id": "acme", "texts": ["\ufeffwhere is my\u200b card\u200d"]})
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == "card_arrival"


def test_whether_another_tenant_stored_a_text_is_not_observable(client: TestClient) -> None:
    """Adapting with a text another tenant stored costs the same encoder work as with a text nobody has."""
    secret = "the merger with globex closes on friday"
    victim = [*SUPPORT, {"text": secret, "label": "refund"}]
    assert client.post("/adapt", json={"tenant_id": "victim", "examples": victim}).status_code == 200

    probe = [
        {"text": secret, "label": "a"},
        {"text": "a text nobody stored", "label": "a"},
        {"text": "another fresh text", "label": "b"},
    ]
    first = client.post("/adapt", json={"tenant_id": "attacker", "examples": probe})
    assert first.status_code == 200
    assert first.json()["n_embedded"] == len(probe)  # the victim's cached embedding was not reused
    again = client.post("/adapt", json={"tenant_id": "attacker", "examples": probe})
    assert again.json()["n_embedded"] == 0  # a tenant's own texts are still cached for its re-adaptation
