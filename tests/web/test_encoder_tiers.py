"""Encoder tiers served side by side: a tenant picks one at /adapt and keeps it; its predictions, reports and
repairs use it; a tenant of an encoder this server does not serve gets 409 `encoder_not_served`, never another
encoder's answer. The second tier here is the tiny random encoder standing in for mpnet (32 dimensions)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.ml.learner import InnerLoopParams
from app.web.app import create_app
from tests.web.conftest import SUPPORT, assert_error


@pytest.fixture
def two_tiers(settings: Settings, real_model: Any, tiny_encoder: Any, redis_store: Any) -> Iterator[TestClient]:
    both = settings.model_copy(update={"encoders": "minilm,mpnet"})
    tiny = (tiny_encoder, InnerLoopParams.constant(3, 0.04, 10.0), None)
    with TestClient(create_app(both, model=real_model, tier_models={"mpnet": tiny})) as client:
        yield client


def test_encoders_are_listed_and_each_tenant_keeps_its_own(two_tiers: TestClient, tiny_encoder: Any) -> None:
    listed = two_tiers.get("/encoders").json()["encoders"]
    assert [(e["name"], e["default"], e["dim"]) for e in listed] == [("minilm", True, 384), ("mpnet", False, 32)]
    assert listed[1]["fingerprint"] == tiny_encoder.fingerprint and listed[1]["checkpoint"] is None

    first = two_tiers.post("/adapt", json={"tenant_id": "a", "examples": SUPPORT})
    second = two_tiers.post("/adapt", json={"tenant_id": "b", "encoder": "mpnet", "examples": SUPPORT})
    assert first.json()["encoder"] == "minilm" and second.json()["encoder"] == "mpnet"
    assert first.json()["encoder_fingerprint"] != second.json()["encoder_fingerprint"]
    for tenant, encoder in (("a", "minilm"), ("b", "mpnet")):
        reply = two_tiers.post("/predict", json={"tenant_id": tenant, "texts": ["my card never came"]}).json()
        assert reply["encoder"] == encoder
        info = two_tiers.get(f"/tenants/{tenant}").json()
        assert info["encoder"] == encoder and info["status"] == "ready"
        report = two_tiers.post(f"/tenants/{tenant}/evaluate", json={})
        assert report.status_code == 200
    more = {"tenant_id": "b", "mode": "append", "examples": [{"text": "send my money back", "label": "refund"}]}
    appended = two_tiers.post("/adapt", json=more)
    assert appended.status_code == 200 and appended.json()["encoder"] == "mpnet"
    assert_error(two_tiers.post("/adapt", json={**more, "encoder": "minilm"}), 409, "encoder_mismatch")
    switched = two_tiers.post("/adapt", json={"tenant_id": "b", "encoder": "minilm", "examples": SUPPORT})
    assert switched.status_code == 200 and switched.json()["encoder"] == "minilm"  # a replace may switch
    reply = two_tiers.post("/predict", json={"tenant_id": "b", "texts": ["my card never came"]}).json()
    assert reply["encoder"] == "minilm" and reply["predictions"][0]["label"] == "card_arrival"
    pinned = two_tiers.post("/predict", json={"tenant_id": "b", "texts": ["hi"], "version": 2}).json()
    assert pinned["encoder"] == "mpnet"  # a retained version answers with its own encoder
    assert_error(
        two_tiers.post("/adapt", json={"tenant_id": "c", "encoder": "bert", "examples": SUPPORT}),
        422,
        "unknown_encoder",
    )


@pytest.mark.parametrize(
    "name",
    ["x" * 100_000, "m" * 65, "minilm ", "../minilm", "-minilm", ""],
    ids=["100k", "65-chars", "space", "path", "dash-first", "empty"],
)
def test_an_encoder_name_outside_the_name_rules_is_a_short_422(client: TestClient, name: str) -> None:
    response = client.post("/adapt", json={"tenant_id": "a", "encoder": name, "examples": SUPPORT})
    assert_error(response, 422, "validation_error")
    assert response.json()["error"]["details"][0]["loc"] == ["body", "encoder"]
    assert len(response.content) < 2048


def test_a_tenant_of_an_encoder_not_served_is_refused_never_readapted(
    two_tiers: TestClient, client: TestClient
) -> None:
    assert two_tiers.post("/adapt", json={"tenant_id": "b", "encoder": "mpnet", "examples": SUPPORT}).status_code == 200
    # `client`: a server on the same Redis that serves MiniLM only
    assert_error(client.post("/predict", json={"tenant_id": "b", "texts": ["hi"]}), 409, "encoder_not_served")
    assert client.get("/tenants/b").json()["status"] == "not_served"
    assert_error(client.post("/tenants/b/evaluate", json={}), 409, "encoder_not_served")
    assert_error(client.post("/tenants/b/suggest", json={"texts": ["hi"]}), 409, "encoder_not_served")
    append = {"tenant_id": "b", "mode": "append", "examples": [{"text": "x y z", "label": "refund"}]}
    assert_error(client.post("/adapt", json=append), 409, "encoder_not_served")
    assert client.get("/tenants/b").json()["version"] == 1  # nothing was re-adapted with MiniLM
    again = two_tiers.post("/predict", json={"tenant_id": "b", "texts": ["hi"]}).json()
    assert again["encoder"] == "mpnet" and again["version"] == 1
    replaced = client.post("/adapt", json={"tenant_id": "b", "examples": SUPPORT})  # an explicit replace may switch
    assert replaced.status_code == 200 and replaced.json()["encoder"] == "minilm"


def test_encoders_setting_is_validated() -> None:
    assert Settings(encoders=" mpnet , minilm", _env_file=None).encoder_names() == ["mpnet", "minilm"]
    for bad in ("", "minilm,minilm", "bert"):
        with pytest.raises(ValueError, match="encoders must list"):
            Settings(encoders=bad, _env_file=None)


def test_auto_keeps_the_cheaper_tier_unless_another_wins_clearly(two_tiers: TestClient) -> None:
    adapted = two_tiers.post("/adapt", json={"tenant_id": "auto", "encoder": "auto", "examples": SUPPORT})
    assert adapted.status_code == 200, adapted.text
    body = adapted.json()
    assert body["encoder"] == "minilm"  # the random stand-in never wins clearly
    choice = body["encoder_choice"]
    assert (choice["requested"], choice["chosen"], choice["preferred"], choice["language"]) == (
        "auto",
        "minilm",
        "minilm",
        "en",
    )
    assert set(choice["accuracies"]) == {"minilm", "mpnet"}
    assert two_tiers.get("/tenants/auto").json()["encoder_choice"] == choice
    named = two_tiers.post("/adapt", json={"tenant_id": "auto", "encoder": "minilm", "examples": SUPPORT})
    assert named.json()["encoder_choice"] is None  # a named tier is no choice of the service's


def test_a_replace_naming_a_version_is_a_compare_and_set(two_tiers: TestClient) -> None:
    first = two_tiers.post("/adapt", json={"tenant_id": "cas", "examples": SUPPORT}).json()
    stale = {"tenant_id": "cas", "examples": SUPPORT, "expected_version": first["version"] + 1}
    assert_error(two_tiers.post("/adapt", json=stale), 409, "concurrent_update")
    current = {"tenant_id": "cas", "examples": SUPPORT, "expected_version": first["version"]}
    assert two_tiers.post("/adapt", json=current).json()["version"] == first["version"] + 1
    new_tenant = {"tenant_id": "cas-new", "examples": SUPPORT, "expected_version": 1}
    assert_error(two_tiers.post("/adapt", json=new_tenant), 409, "concurrent_update")


def test_the_report_says_which_tier_auto_would_choose(two_tiers: TestClient) -> None:
    two_tiers.post("/adapt", json={"tenant_id": "advised", "encoder": "mpnet", "examples": SUPPORT})
    report = two_tiers.post("/tenants/advised/evaluate", json={}).json()
    advice = report["encoder_advice"]
    assert advice["current"] == "mpnet" and advice["chosen"] == "minilm" and advice["switch"] is True
    assert set(advice["accuracies"]) == {"minilm", "mpnet"}
    labeled = two_tiers.post("/tenants/advised/evaluate", json={"examples": SUPPORT[:2]}).json()
    assert labeled["encoder_advice"] is None  # a test-set report scores the tenant's head only
