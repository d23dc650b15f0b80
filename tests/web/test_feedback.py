"""POST /tenants/{id}/feedback with the real encoder and a real Redis: a correction is answered with the new
version (counts of added and ignored corrections) and the next /predict of the text answers the corrected label
(over real HTTP against `fewshot serve`); the report counts each label's corrections; bad bodies are 4xx with a
code; a key scoped to another tenant cannot correct this one."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from harness.server_proc import fewshot_server
from tests.web.conftest import ADMIN, SUPPORT, assert_error, bearer

AMBIGUOUS = "I paid with my card in euros and want the money back"


@pytest.fixture
def server(redis_url: str, redis_prefix: str) -> Iterator[str]:
    with fewshot_server(redis_url, prefix=redis_prefix, extra_env={"FEWSHOT_CHECKPOINT": "none"}) as url:
        yield url


def _label(http: httpx.Client | TestClient, tenant: str, text: str) -> str | None:
    answer = http.post("/predict", json={"tenant_id": tenant, "texts": [text]})
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"][0]["label"]


def test_a_correction_then_the_same_text_predicted_answers_the_corrected_label_over_http(server: str) -> None:
    with httpx.Client(base_url=server, timeout=60) as http:
        assert http.post("/adapt", json={"tenant_id": "fb", "examples": SUPPORT}).status_code == 200
        before = _label(http, "fb", AMBIGUOUS)
        right = next(label for label in ("exchange_rate", "card_arrival", "refund") if label != before)
        reply = http.post(
            "/tenants/fb/feedback",
            json={"corrections": [{"text": AMBIGUOUS, "label": right, "predicted": before}], "expected_version": 1},
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert (body["version"], body["added"], body["ignored_duplicates"]) == (2, 1, 0)
        assert body["counts"][right] == 4 and body["n_examples"] == 10
        assert _label(http, "fb", AMBIGUOUS) == right  # one request cycle: feedback reply, then /predict

        again = http.post("/tenants/fb/feedback", json={"corrections": [{"text": AMBIGUOUS, "label": right}]})
        assert again.json()["ignored_duplicates"] == 1 and again.json()["added"] == 0

        relabel = http.post("/tenants/fb/feedback", json={"corrections": [{"text": AMBIGUOUS, "label": "dispute"}]})
        assert relabel.status_code == 200, relabel.text
        assert relabel.json()["relabelled"] == 1 and relabel.json()["counts"]["dispute"] == 1
        assert _label(http, "fb", AMBIGUOUS) == "dispute"


def test_the_report_counts_each_labels_corrections(client: TestClient) -> None:
    client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT})
    fixes = [
        {"text": "card is lost in the mail", "label": "card_arrival"},
        {"text": "yen rate", "label": "exchange_rate"},
    ]
    assert client.post("/tenants/acme/feedback", json={"corrections": fixes}).status_code == 200
    report = client.post("/tenants/acme/evaluate").json()["report"]
    corrections = {entry["label"]: entry["corrections"] for entry in report["per_label"]}
    assert corrections == {"card_arrival": 1, "exchange_rate": 1, "refund": 0}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"corrections": []}, 422, "no_corrections"),
        ({"corrections": [{"text": "  ", "label": "refund"}]}, 422, "empty_text"),
        ({"corrections": [{"text": "ok", "label": "\u200b"}]}, 422, "empty_label"),
        ({"corrections": [{"text": f"t{i}", "label": "refund"} for i in range(9)]}, 422, "too_many_corrections"),
        ({"corrections": [{"text": "ok", "label": "refund"}], "expected_version": 7}, 409, "concurrent_update"),
        ({"corrections": [{"text": "ok", "label": "refund"}], "expected_version": "1"}, 422, "validation_error"),
        ({"corrections": [{"text": "ok"}]}, 422, "validation_error"),
        ({"corrections": [{"text": "ok", "label": "refund", "extra": 1}]}, 422, "validation_error"),
    ],
)
def test_bad_feedback_is_refused_with_a_code(client: TestClient, body: dict, status: int, code: str) -> None:
    client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT})
    assert_error(client.post("/tenants/acme/feedback", json=body), status, code)
    assert client.get("/tenants/acme").json()["version"] == 1


def test_feedback_for_an_unknown_tenant_is_404(client: TestClient) -> None:
    answer = client.post("/tenants/nobody/feedback", json={"corrections": [{"text": "a", "label": "b"}]})
    assert_error(answer, 404, "unknown_tenant")


def test_a_key_of_another_tenant_cannot_correct_this_one(make_client) -> None:
    client = make_client()
    assert client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT}, headers=ADMIN).status_code == 200
    key = client.post("/admin/keys", json={"tenants": ["other"]}, headers=ADMIN).json()["key"]
    answer = client.post(
        "/tenants/acme/feedback", json={"corrections": [{"text": "a b", "label": "refund"}]}, headers=bearer(key)
    )
    assert_error(answer, 403, "forbidden_tenant")
