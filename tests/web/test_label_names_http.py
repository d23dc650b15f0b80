"""Label names through /adapt (real encoder, real Redis): the reply says whether names were used and why, the record
keeps the mode, an append keeps it, codes are never used in `auto`, and a bad mode is a 422."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.store import RedisStore
from tests.web.conftest import SUPPORT

ONE_SHOT = [
    {"text": "my new card still has not come", "label": "card_arrival"},
    {"text": "what rate do you give for dollars", "label": "exchange_rate"},
    {"text": "I want my money back for this order", "label": "refund"},
]


def _adapt(client: TestClient, **body: object) -> dict:
    response = client.post("/adapt", json={"tenant_id": "acme", **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_reply_reports_the_decision_and_an_append_keeps_the_mode(
    client: TestClient, redis_store: RedisStore
) -> None:
    first = _adapt(client, examples=ONE_SHOT)  # default: auto; one example per label: nothing to hold out
    names = first["label_names"]
    assert names["mode"] == "auto" and names["used"] is True and names["n_named"] == 3
    assert "too few examples" in names["reason"] and "label_names" in first["timings_ms"]
    stored = redis_store.load("acme")
    assert stored is not None and stored.meta["label_names"] == {"mode": "auto", "used": True}
    assert not any(row.get("description") for row in redis_store.load_support("acme") or [])  # names not stored

    cross_validated = _adapt(client, examples=SUPPORT, mode="append")["label_names"]
    assert cross_validated["mode"] == "auto" and cross_validated["cv_accuracy_with"] is not None
    assert cross_validated["used"] == (cross_validated["cv_accuracy_with"] >= cross_validated["cv_accuracy_without"])

    off = _adapt(client, examples=SUPPORT, label_names="off")["label_names"]
    assert off == {
        "mode": "off",
        "used": False,
        "reason": "label_names is off",
        "n_named": 0,
        "cv_accuracy_with": None,
        "cv_accuracy_without": None,
    }
    more = [{"text": "the card I ordered is not here yet", "label": "card_arrival"}]
    kept = _adapt(client, examples=more, mode="append")["label_names"]
    assert kept["mode"] == "off" and kept["used"] is False
    stored = redis_store.load("acme")
    assert stored is not None and stored.meta["label_names"] == {"mode": "off", "used": False}
    assert _adapt(client, examples=more, mode="append", label_names="on")["label_names"]["used"] is True


def test_code_labels_are_never_used_in_auto(client: TestClient) -> None:
    codes = {"card_arrival": "INT_0000", "exchange_rate": "INT_0001", "refund": "INT_0002"}
    examples = [{"text": e["text"], "label": codes[e["label"]]} for e in ONE_SHOT]
    names = _adapt(client, examples=examples)["label_names"]
    assert names["used"] is False and names["reason"] == "no label name reads as words"


def test_a_description_takes_the_place_of_the_name(client: TestClient) -> None:
    descriptions = {label: f"{label} described" for label in ("card_arrival", "exchange_rate", "refund")}
    names = _adapt(client, examples=ONE_SHOT, label_descriptions=descriptions, label_names="on")["label_names"]
    assert names["used"] is False and names["reason"] == "every label has a description"


def test_an_unknown_mode_is_a_validation_error(client: TestClient) -> None:
    response = client.post("/adapt", json={"tenant_id": "acme", "examples": ONE_SHOT, "label_names": "sometimes"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
