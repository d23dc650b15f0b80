"""The top-label rule over HTTP: a multi-label tenant whose every example carries a label gets at least one label
per text (real encoder, real Redis); a tenant with unlabeled examples, or a request's `label_threshold`, does not."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.web.conftest import ADMIN, bearer
from tests.web.test_multilabel_http import TICKETS

LABELED = [example for example in TICKETS if example["labels"]]
TEXTS = ["you charged my card two times", "the app keeps crashing on startup", "thank you, have a nice day"]


def test_every_text_gets_a_label_when_every_example_has_one(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    created = client.post("/admin/keys", headers=ADMIN, json={"name": "t", "tenants": ["labeled", "mixed"]})
    key = bearer(created.json()["key"])
    for tenant, examples in (("labeled", LABELED), ("mixed", TICKETS)):
        adapted = client.post(
            "/adapt", headers=key, json={"tenant_id": tenant, "task": "multi_label", "examples": examples}
        )
        assert adapted.status_code == 200, adapted.text

    labeled = client.post("/predict", headers=key, json={"tenant_id": "labeled", "texts": TEXTS}).json()
    applied = [[item["label"] for item in p["labels"]] for p in labeled["predictions"]]
    assert all(applied), applied  # the top label applies even to small talk
    assert "billing" in applied[0] and "bug" in applied[1]
    assert not any(p["out_of_scope"] for p in labeled["predictions"])
    for p in labeled["predictions"]:  # the forced label is the text's best-scoring one
        assert p["labels"][0]["label"] == p["top_k"][0]["label"] == p["label"]

    strict = {"tenant_id": "labeled", "texts": TEXTS[2:], "label_threshold": 0.999999}
    assert client.post("/predict", headers=key, json=strict).json()["predictions"][0]["labels"] == []

    mixed = client.post("/predict", headers=key, json={"tenant_id": "mixed", "texts": TEXTS[2:]}).json()
    assert mixed["predictions"][0]["labels"] == [] and mixed["predictions"][0]["out_of_scope"]
