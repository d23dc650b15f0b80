"""POST /tenants/{id}/evaluate and /tenants/{id}/suggest: reports, caching, validation and access, over HTTP."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.web.conftest import ADMIN, SUPPORT, bearer, support

LONELY = support(("lonely", ["please close my account for good"]))
POOL = [
    "card still not here after two weeks",
    "what rate do you use for yen",
    "can I get my money returned",
    "my card has not arrived yet",  # already labeled
    "the delivery of my card is late",
    "convert 100 dollars to euros",
]


def adapt(client: TestClient, tenant: str, examples: list[dict], **extra: object) -> dict:
    response = client.post("/adapt", json={"tenant_id": tenant, "examples": examples, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_report_with_a_single_example_label_is_cached_until_the_tenant_changes(client: TestClient) -> None:
    first_version = adapt(client, "acme", SUPPORT + LONELY)["version"]
    response = client.post("/tenants/acme/evaluate")
    assert response.status_code == 200, response.text
    body = response.json()
    report = body["report"]
    assert body["version"] == first_version and body["cached"] is False
    assert report["method"] == "cross_validation" and report["n_folds"] == 3
    assert report["n_examples"] == 10 and report["n_evaluated"] == 9
    assert report["not_evaluable"] == ["lonely"]
    lonely = next(entry for entry in report["per_label"] if entry["label"] == "lonely")
    assert lonely["status"] == "not_evaluable" and lonely["examples"] == 1 and lonely["recall"] is None
    assert report["labels_needing_examples"][0]["label"] == "lonely"
    assert 0 <= report["accuracy_ci95"][0] <= report["accuracy"] <= report["accuracy_ci95"][1] <= 1
    assert report["confusion"]["format"] == "dense" and len(report["confusion"]["matrix"]) == 4
    assert sum(map(sum, report["confusion"]["matrix"])) == 9
    right = sum(report["confusion"]["matrix"][y][y] for y in range(4))
    assert report["accuracy"] == round(right / 9, 4)  # the headline is measured, never the projection
    assert report["accuracy"] <= report["projected_accuracy"] <= report["accuracy_ci95"][1]
    assert report["oos_tradeoff"][0]["rule"] == "tenant" and report["ece"] is not None

    again = client.post("/tenants/acme/evaluate", json={}).json()
    assert again["cached"] is True and again["report"] == report and again["version"] == first_version

    appended = adapt(client, "acme", support(("lonely", ["delete my profile and data"])), mode="append")
    fresh = client.post("/tenants/acme/evaluate").json()
    assert fresh["cached"] is False and fresh["version"] == appended["version"] > first_version
    assert fresh["report"]["not_evaluable"] == [] and fresh["report"]["n_evaluated"] == 11

    pinned = client.post("/tenants/acme/evaluate", json={"version": first_version}).json()
    assert pinned["version"] == first_version and pinned["cached"] is True and pinned["report"] == report


def test_report_on_a_labeled_test_set(client: TestClient) -> None:
    adapt(client, "acme", SUPPORT)
    test_set = [
        {"text": "my new card is late", "label": "card_arrival"},
        {"text": "how many pounds for a euro", "label": "exchange_rate"},
        {"text": "give me a refund", "label": "refund"},
    ]
    body = client.post("/tenants/acme/evaluate", json={"examples": test_set}).json()
    report = body["report"]
    assert report["method"] == "test_set" and report["n_evaluated"] == 3 and body["cached"] is False
    assert report["accuracy"] == 1.0 and report["macro_f1"] == 1.0
    assert report["projected_accuracy"] is None and report["learning_curve"] is None
    assert [entry["support"] for entry in report["per_label"]] == [1, 1, 1]

    unknown = client.post("/tenants/acme/evaluate", json={"examples": [{"text": "hi", "label": "greeting"}]})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_label"
    empty = client.post("/tenants/acme/evaluate", json={"examples": []})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "no_examples"


def test_evaluate_errors(client: TestClient) -> None:
    missing = client.post("/tenants/nobody/evaluate")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_tenant"
    adapt(client, "acme", SUPPORT)
    for body, code in (({"version": "1"}, "validation_error"), ({"version": 1.0}, "validation_error")):
        response = client.post("/tenants/acme/evaluate", json=body)
        assert response.status_code == 422 and response.json()["error"]["code"] == code, body
    gone = client.post("/tenants/acme/evaluate", json={"version": 99})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_version"
    extra = client.post("/tenants/acme/evaluate", json={"versions": 1})
    assert extra.status_code == 422


def test_suggest_picks_uncertain_new_texts_with_a_predicted_label(client: TestClient) -> None:
    adapt(client, "acme", SUPPORT)
    response = client.post("/tenants/acme/suggest", json={"texts": POOL + POOL[:2], "k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pool_size"] == len(POOL) and len(body["suggestions"]) == 3
    texts = [s["text"] for s in body["suggestions"]]
    assert len(set(texts)) == 3 and set(texts) <= set(POOL)
    assert "my card has not arrived yet" not in texts  # already in the support set: nothing to learn
    for suggestion in body["suggestions"]:
        assert suggestion["predicted_label"] in {"card_arrival", "exchange_rate", "refund"} and suggestion["reason"]
    everything = client.post("/tenants/acme/suggest", json={"texts": POOL, "k": 50}).json()
    assert len(everything["suggestions"]) == len(POOL)


def test_suggest_validation(client: TestClient) -> None:
    adapt(client, "acme", SUPPORT)
    cases = [
        ({"texts": [], "k": 1}, "no_texts"),
        ({"texts": ["a text"], "k": 0}, "invalid_k"),
        ({"texts": ["a text"], "k": "2"}, "validation_error"),
        ({"texts": ["a text"], "k": True}, "validation_error"),
        ({"texts": ["   "], "k": 1}, "empty_text"),
        ({"texts": ["x" * 201], "k": 1}, "text_too_long"),
        ({"texts": [f"text {i}" for i in range(51)], "k": 1}, "too_many_texts"),  # max_examples = 50
    ]
    for body, code in cases:
        response = client.post("/tenants/acme/suggest", json=body)
        assert response.status_code == 422 and response.json()["error"]["code"] == code, (body, response.text)
    missing = client.post("/tenants/nobody/suggest", json={"texts": ["hello"], "k": 1})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_tenant"


def test_endpoints_with_auth_follow_the_key_scope(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for tenant in ("acme", "globex"):
        assert client.post("/adapt", json={"tenant_id": tenant, "examples": SUPPORT}, headers=ADMIN).status_code == 200
    key = client.post("/admin/keys", json={"name": "acme", "tenants": ["acme"]}, headers=ADMIN).json()["key"]
    mine = bearer(key)
    assert client.post("/tenants/acme/evaluate", headers=mine).status_code == 200
    assert client.post("/tenants/acme/suggest", json={"texts": POOL, "k": 2}, headers=mine).status_code == 200
    for path, body in (("/tenants/globex/evaluate", None), ("/tenants/globex/suggest", {"texts": POOL, "k": 1})):
        denied = client.post(path, json=body, headers=mine)
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden_tenant"
        anonymous = client.post(path, json=body)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "missing_api_key"


def test_a_300_label_tenant_gets_a_sparse_report(make_client: Callable[..., TestClient]) -> None:
    client = make_client(auth_enabled=False, max_labels=300, max_examples=600)
    examples = [
        {"text": f"question {variant} about product number {n}", "label": f"product_{n}"}
        for n in range(300)
        for variant in ("one", "two")
    ]
    assert client.post("/adapt", json={"tenant_id": "big", "examples": examples}).status_code == 200
    response = client.post("/tenants/big/evaluate")
    assert response.status_code == 200, response.text
    report = response.json()["report"]
    assert report["n_labels"] == 300 and report["n_evaluated"] == 600 and report["n_folds"] == 2
    confusion = report["confusion"]
    assert confusion["format"] == "sparse" and len(confusion["diagonal"]) == 300
    assert sum(confusion["diagonal"]) + sum(cell["count"] for cell in confusion["cells"]) == 600
    assert len(report["per_label"]) == 300 and len(report["labels_needing_examples"]) <= 20
