"""/predict `explain: k` with the real encoder and a real Redis: evidence per prediction (the predicted label's
nearest support examples, then the runner-up's) over real HTTP against `fewshot serve`, `null` without explain,
a 422 `invalid_explain` outside 0..10, and never another tenant's examples."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from harness.server_proc import fewshot_server
from tests.web.conftest import CARDS, FX, REFUND, SUPPORT, assert_error

OTHER = [{"text": f"confidential memo number {i}", "label": label} for label in ("x", "y") for i in range(3)]


@pytest.fixture
def server(redis_url: str, redis_prefix: str) -> Iterator[str]:
    with fewshot_server(redis_url, prefix=redis_prefix, extra_env={"FEWSHOT_CHECKPOINT": "none"}) as url:
        yield url


def test_evidence_over_http_is_the_nearest_examples_of_the_predicted_and_runner_up_labels(server: str) -> None:
    with httpx.Client(base_url=server, timeout=60) as http:
        assert http.post("/adapt", json={"tenant_id": "ex", "examples": SUPPORT}).status_code == 200
        assert http.post("/adapt", json={"tenant_id": "other", "examples": OTHER}).status_code == 200
        texts = ["my card never came", "give me a refund please"]
        answer = http.post("/predict", json={"tenant_id": "ex", "texts": texts, "top_k": 2, "explain": 2})
        assert answer.status_code == 200, answer.text
        first, second = answer.json()["predictions"]
        assert first["label"] == "card_arrival" and second["label"] == "refund"
        for prediction in (first, second):
            evidence = prediction["evidence"]
            labels = [e["label"] for e in evidence]
            assert labels == [prediction["top_k"][0]["label"]] * 2 + [prediction["top_k"][1]["label"]] * 2
            by_label = {"card_arrival": CARDS, "exchange_rate": FX, "refund": REFUND}
            assert all(e["text"] in by_label[e["label"]] for e in evidence)
            sims = [e["similarity"] for e in evidence]
            assert sims[0] >= sims[1] and sims[2] >= sims[3] and sims[0] > sims[2]
        assert first["evidence"][0]["text"] == "my card has not arrived yet"
        plain = http.post("/predict", json={"tenant_id": "ex", "texts": texts})
        assert all(p["evidence"] is None for p in plain.json()["predictions"])


@pytest.mark.parametrize("explain", [-1, 11])
def test_explain_outside_0_to_10_is_422(client: TestClient, explain: int) -> None:
    client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT})
    answer = client.post("/predict", json={"tenant_id": "acme", "texts": ["hi there"], "explain": explain})
    assert_error(answer, 422, "invalid_explain")


def test_explain_must_be_an_integer(client: TestClient) -> None:
    client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT})
    answer = client.post("/predict", json={"tenant_id": "acme", "texts": ["hi there"], "explain": "3"})
    assert_error(answer, 422, "validation_error")


def test_evidence_never_shows_another_tenants_examples(client: TestClient) -> None:
    client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT})
    client.post("/adapt", json={"tenant_id": "other", "examples": OTHER})
    texts = ["confidential memo number 1", "my card never came"]
    for tenant, own in (("acme", {e["text"] for e in SUPPORT}), ("other", {e["text"] for e in OTHER})):
        answer = client.post("/predict", json={"tenant_id": tenant, "texts": texts, "explain": 10}).json()
        shown = {e["text"] for p in answer["predictions"] for e in p["evidence"]}
        assert shown and shown <= own
