"""Multi-label tenants end to end over HTTP: real encoder, real Redis, auth on (a key scoped to the tenant)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.redis_server import StoredVersion
from tests.web.conftest import ADMIN, SUPPORT, assert_error, bearer

TICKETS: list[dict[str, Any]] = [
    *(
        {"text": text, "labels": ["billing"]}
        for text in (
            "I was charged twice this month",
            "please refund my last payment",
            "my invoice shows the wrong amount",
            "why did my subscription price go up",
        )
    ),
    *(
        {"text": text, "labels": ["bug"]}
        for text in (
            "the app crashes when I open settings",
            "the export button throws an error",
            "the page goes blank after I click save",
            "login fails with an unknown error",
        )
    ),
    *(
        {"text": text, "labels": ["feature_request"]}
        for text in (
            "please add a dark mode",
            "could you support exporting to csv",
            "I would love a calendar integration",
            "it would be great to have keyboard shortcuts",
        )
    ),
    {"text": "I was billed twice and now the app crashes on launch", "labels": ["billing", "bug"]},
    {"text": "the csv export is broken, and please add excel export too", "labels": ["bug", "feature_request"]},
    {"text": "thanks, that solved it", "labels": []},
    {"text": "hello, good morning", "labels": []},
]


def _tenant_client(make_client: Callable[..., TestClient]) -> tuple[TestClient, dict[str, str]]:
    client = make_client()
    created = client.post("/admin/keys", headers=ADMIN, json={"name": "tickets", "tenants": ["tickets", "cards"]})
    assert created.status_code == 201, created.text
    return client, bearer(created.json()["key"])


def test_multilabel_tenant_end_to_end(make_client: Callable[..., TestClient]) -> None:
    client, key = _tenant_client(make_client)
    adapted = client.post(
        "/adapt", headers=key, json={"tenant_id": "tickets", "task": "multi_label", "examples": TICKETS}
    )
    assert adapted.status_code == 200, adapted.text
    body = adapted.json()
    assert body["task"] == "multi_label" and body["n_negatives"] == 2 and body["oos_threshold"] is None
    assert body["counts"] == {"billing": 5, "bug": 6, "feature_request": 5}
    assert set(body["thresholds"]) == {"billing", "bug", "feature_request"}

    texts = [
        "you charged my card two times",
        "the app keeps crashing on startup",
        "I got double charged and the app crashes",
        "thank you, have a nice day",
    ]
    predicted = client.post("/predict", headers=key, json={"tenant_id": "tickets", "texts": texts, "top_k": 3})
    assert predicted.status_code == 200, predicted.text
    reply = predicted.json()
    assert reply["task"] == "multi_label"
    applied = [{item["label"] for item in p["labels"]} for p in reply["predictions"]]
    assert "billing" in applied[0] and "bug" in applied[1]
    assert {"billing", "bug"} <= applied[2]
    assert applied[3] == set() and reply["predictions"][3]["out_of_scope"]
    for p in reply["predictions"]:
        assert len(p["top_k"]) == 3 and [s["score"] for s in p["labels"]] == sorted(
            (s["score"] for s in p["labels"]), reverse=True
        )
        assert p["label"] == (p["labels"][0]["label"] if p["labels"] else None)

    low = client.post(
        "/predict", headers=key, json={"tenant_id": "tickets", "texts": texts[3:], "label_threshold": 1e-9}
    )
    assert low.status_code == 200 and low.json()["label_threshold"] == 1e-9
    assert len(low.json()["predictions"][0]["labels"]) == 3

    info = client.get("/tenants/tickets", headers=key).json()
    assert info["task"] == "multi_label" and info["thresholds"] == body["thresholds"] and info["n_negatives"] == 2

    more = {"tenant_id": "tickets", "mode": "append", "examples": [{"text": "cancel my plan", "labels": ["billing"]}]}
    appended = client.post("/adapt", headers=key, json=more)
    assert appended.status_code == 200 and appended.json()["task"] == "multi_label"
    assert appended.json()["counts"]["billing"] == 6 and appended.json()["version"] == 2


def test_multilabel_requests_that_do_not_fit_get_clear_errors(make_client: Callable[..., TestClient]) -> None:
    client, key = _tenant_client(make_client)
    wrong_shape = client.post("/adapt", headers=key, json={"tenant_id": "cards", "examples": TICKETS})
    assert_error(wrong_shape, 422, "multi_label_example")
    single_in_multi = {"tenant_id": "tickets", "task": "multi_label", "examples": SUPPORT}
    assert_error(client.post("/adapt", headers=key, json=single_in_multi), 422, "single_label_example")
    unknown_task = {"tenant_id": "tickets", "task": "multi", "examples": TICKETS}
    assert_error(client.post("/adapt", headers=key, json=unknown_task), 422, "validation_error")
    not_a_list = {"tenant_id": "tickets", "task": "multi_label", "examples": [{"text": "x", "labels": "bug"}]}
    assert_error(client.post("/adapt", headers=key, json=not_a_list), 422, "validation_error")
    assert client.get("/tenants/tickets", headers=key).status_code == 404  # nothing was written

    assert (
        client.post(
            "/adapt", headers=key, json={"tenant_id": "tickets", "task": "multi_label", "examples": TICKETS}
        ).status_code
        == 200
    )
    switch = {"tenant_id": "tickets", "mode": "append", "task": "single_label", "examples": SUPPORT}
    assert_error(client.post("/adapt", headers=key, json=switch), 409, "task_mismatch")
    oos = {"tenant_id": "tickets", "texts": ["x"], "oos_threshold": 0.3}
    assert_error(client.post("/predict", headers=key, json=oos), 422, "invalid_option")
    out_of_range = {"tenant_id": "tickets", "texts": ["x"], "label_threshold": 1.0}
    assert_error(client.post("/predict", headers=key, json=out_of_range), 422, "validation_error")
    report = client.post("/tenants/tickets/evaluate", headers=key, json={})
    assert report.status_code == 200 and report.json()["report"]["task"] == "multi_label"
    assert report.json()["report"]["micro_f1"] is not None
    suggested = client.post("/tenants/tickets/suggest", headers=key, json={"texts": ["app crashed after payment"]})
    assert suggested.status_code == 200 and suggested.json()["suggestions"][0]["runner_up"]
    assert client.get("/tenants/tickets", headers=key).json()["version"] == 1  # refused requests changed nothing

    assert client.post("/adapt", headers=key, json={"tenant_id": "cards", "examples": SUPPORT}).status_code == 200
    single = {"tenant_id": "cards", "texts": ["x"], "label_threshold": 0.5}
    assert_error(client.post("/predict", headers=key, json=single), 422, "invalid_option")
    plain = client.post("/predict", headers=key, json={"tenant_id": "cards", "texts": ["where is my card"]}).json()
    assert plain["task"] == "single_label" and plain["predictions"][0]["labels"] is None

    other = client.post("/admin/keys", headers=ADMIN, json={"name": "other", "tenants": ["other"]}).json()["key"]
    stranger = client.post("/predict", headers=bearer(other), json={"tenant_id": "tickets", "texts": ["x"]})
    assert stranger.status_code == 403


def test_multilabel_versions_rollback_and_repair(make_client: Callable[..., TestClient], redis_store: Any) -> None:
    client, key = _tenant_client(make_client)
    first = {"tenant_id": "tickets", "task": "multi_label", "examples": TICKETS}
    assert client.post("/adapt", headers=key, json=first).status_code == 200
    described = {
        "tenant_id": "tickets",
        "mode": "append",
        "examples": [],
        "label_descriptions": {"praise": "thanks, great job"},
    }
    second = client.post("/adapt", headers=key, json=described)
    assert second.status_code == 200 and "praise" in second.json()["labels"] and second.json()["n_descriptions"] == 1
    rolled = client.post("/tenants/tickets/rollback", headers=key, json={"version": 1})
    assert rolled.status_code == 200 and rolled.json()["version"] == 3
    info = client.get("/tenants/tickets", headers=key).json()
    assert info["task"] == "multi_label" and "praise" not in info["labels"]
    versions = client.get("/tenants/tickets/versions", headers=key).json()["versions"]
    assert [v["task"] for v in versions] == ["multi_label"] * 3

    stored = StoredVersion(redis_store, "tickets")
    head = stored.get("head")
    stored.set("head", head[: len(head) // 2])  # corrupt: the service re-adapts from the stored support set
    assert client.get("/tenants/tickets", headers=key).json()["status"] == "corrupt"
    repaired = client.post("/predict", headers=key, json={"tenant_id": "tickets", "texts": ["refund me please"]})
    assert repaired.status_code == 200 and repaired.json()["version"] == 4 and repaired.json()["task"] == "multi_label"
    assert client.get("/tenants/tickets", headers=key).json()["thresholds"] == info["thresholds"]
