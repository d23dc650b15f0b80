"""The client against a real server (uvicorn, real encoder, real Redis, API keys on): typed replies, typed errors
with the server's codes, compare-and-set writes, iteration, the async client."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fewshot_client import (
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    RetryPolicy,
    Unauthorized,
)
from fewshot_client.calls import API_KEY_ENV

from tests.client.conftest import ADMIN_KEY, SUPPORT, live_server


def _openapi(server: str) -> dict[str, Any]:
    return httpx.get(f"{server}/openapi.json", timeout=30).json()


def _has_request_field(server: str, path: str, field: str) -> bool:
    spec = _openapi(server)
    operation = spec["paths"].get(path, {}).get("post")
    if operation is None:
        return False
    ref = operation["requestBody"]["content"]["application/json"]["schema"].get("$ref", "")
    schema = spec["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
    return field in schema.get("properties", {})


@pytest.fixture
def client(server: str) -> Client:
    with Client(server, api_key=ADMIN_KEY) as c:
        yield c


def test_adapt_predict_append_versions_rollback_delete(client: Client, tenant: str) -> None:
    adapted = client.adapt(tenant, SUPPORT)
    assert adapted.tenant_id == tenant and set(adapted.labels) == {"card_arrival", "exchange_rate", "refund"}
    predicted = client.predict(tenant, ["where is my card", "refund please"], top_k=2)
    assert [p.label for p in predicted.predictions] == ["card_arrival", "refund"]
    assert predicted.version == adapted.version and len(predicted.predictions[0].top_k) == 2

    appended = client.append(tenant, [{"text": "is there a fee for topping up", "label": "top_up_fee"}])
    assert appended.version > adapted.version and appended.counts["top_up_fee"] == 1
    assert client.tenant(tenant).version == appended.version
    versions = list(client.iter_versions(tenant))
    assert [v.version for v in versions] == [appended.version, adapted.version]

    restored = client.rollback(tenant, adapted.version)
    assert restored.restored_from == adapted.version and client.tenant(tenant).labels == adapted.labels
    assert tenant in set(client.iter_tenants())
    client.delete(tenant)
    with pytest.raises(NotFound) as missing:
        client.tenant(tenant)
    assert missing.value.status == 404 and missing.value.code == "unknown_tenant"


def test_errors_are_typed_with_the_servers_code(server: str, client: Client, tenant: str) -> None:
    with pytest.raises(NotFound) as unknown:
        client.predict(tenant, ["hello"])
    assert unknown.value.code == "unknown_tenant" and tenant in unknown.value.detail

    with pytest.raises(InvalidRequest) as few:
        client.adapt(tenant, SUPPORT[:1])
    assert few.value.status == 422 and few.value.code == "too_few_labels"

    client.adapt(tenant, SUPPORT)
    with pytest.raises(InvalidRequest) as empty:
        client.predict(tenant, ["fine", "  "])
    assert empty.value.code == "empty_text"

    with pytest.raises(Conflict) as mismatch:  # an append naming another task: 409
        client.append(tenant, [{"text": "x", "labels": ["a"]}], task="multi_label")
    assert mismatch.value.status == 409 and mismatch.value.code == "task_mismatch"

    with Client(server, api_key="fsk_not-a-key") as stranger, pytest.raises(Unauthorized) as bad_key:
        stranger.tenant(tenant)
    assert bad_key.value.code == "invalid_api_key"

    created = httpx.post(
        f"{server}/admin/keys",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        json={"name": "other", "tenants": ["someone-else"]},
    ).json()
    with Client(server, api_key=created["key"]) as scoped, pytest.raises(Forbidden) as forbidden:
        scoped.predict(tenant, ["where is my card"])
    assert forbidden.value.code == "forbidden_tenant"
    with Client(server, api_key=created["key"]) as scoped:
        assert list(scoped.iter_tenants()) == []  # its own tenant has no model: never another tenant's id


def test_api_key_comes_from_the_environment(server: str, tenant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, ADMIN_KEY)
    with Client(server) as client:
        assert client.adapt(tenant, SUPPORT).version >= 1
    monkeypatch.delenv(API_KEY_ENV)
    with Client(server) as client, pytest.raises(Unauthorized) as missing:
        client.tenant(tenant)
    assert missing.value.code == "missing_api_key"


def test_adapt_expected_version_is_a_compare_and_set(server: str, client: Client, tenant: str) -> None:
    assert _has_request_field(server, "/adapt", "expected_version")
    first = client.adapt(tenant, SUPPORT)
    second = client.append(tenant, [{"text": "top up fee?", "label": "top_up_fee"}], expected_version=first.version)
    with pytest.raises(Conflict):
        client.append(tenant, [{"text": "exchange fee?", "label": "fees"}], expected_version=first.version)
    assert client.tenant(tenant).version == second.version


def test_feedback_expected_version_is_a_compare_and_set(server: str, client: Client, tenant: str) -> None:
    if "/tenants/{tenant_id}/feedback" not in _openapi(server)["paths"]:
        pytest.skip("this server has no /tenants/{id}/feedback yet")
    first = client.adapt(tenant, SUPPORT)
    text = "did my card get lost in the post"
    corrected = client.feedback(
        tenant, [{"text": text, "label": "card_arrival", "predicted": "refund"}], expected_version=first.version
    )
    assert corrected.version > first.version
    assert client.predict(tenant, [text]).predictions[0].label == "card_arrival"
    with pytest.raises(Conflict) as stale:
        client.feedback(tenant, [{"text": "send my money back", "label": "refund"}], expected_version=first.version)
    assert stale.value.status == 409


def test_predict_explain_returns_evidence(server: str, client: Client, tenant: str) -> None:
    assert _has_request_field(server, "/predict", "explain")
    client.adapt(tenant, SUPPORT)
    prediction = client.predict(tenant, ["where is my card"], explain=2).predictions[0]
    assert prediction.evidence and prediction.evidence[0].label == "card_arrival"
    own = {e.text for e in prediction.evidence if e.label == "card_arrival"}
    assert own <= {e["text"] for e in SUPPORT if e["label"] == "card_arrival"}


def test_evaluate_suggest_encoders_health(client: Client, tenant: str) -> None:
    client.adapt(tenant, SUPPORT)
    report = client.evaluate(tenant)
    assert report.report["method"] == "cross_validation" and report.report["n_examples"] == len(SUPPORT)
    suggested = client.suggest(tenant, ["card still not here", "what rate for yen", "pay by phone?"], k=2)
    assert len(suggested.suggestions) == 2 and suggested.pool_size == 3
    encoders = client.encoders().encoders
    assert sum(e.default for e in encoders) == 1
    assert client.health().status == "ok"


def test_async_client(server: str, tenant: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(server, api_key=ADMIN_KEY) as client:
            adapted = await client.adapt(tenant, SUPPORT)
            replies = await asyncio.gather(*(client.predict(tenant, [t]) for t in ("my card?", "refund me")))
            assert [r.predictions[0].label for r in replies] == ["card_arrival", "refund"]
            assert [v.version async for v in client.iter_versions(tenant)] == [adapted.version]
            assert tenant in [t async for t in client.iter_tenants()]
            with pytest.raises(NotFound):
                await client.rollback(tenant, adapted.version + 100)

    asyncio.run(scenario())


def test_a_real_429_is_raised_as_rate_limited_with_retry_after(redis_url: str, real_model: Any) -> None:
    with (
        live_server(redis_url, real_model, rate_limit_requests=2, rate_limit_window_s=60) as url,
        Client(url, api_key=ADMIN_KEY, retry=RetryPolicy(max_attempts=1)) as client,
    ):
        for _ in range(2):
            client.encoders()
        with pytest.raises(RateLimited) as limited:
            client.encoders()
    assert limited.value.code == "rate_limited" and 0 < (limited.value.retry_after or 0) <= 60


def test_iteration_follows_the_servers_pages(client: Client, tenant: str) -> None:
    names = [f"{tenant}-page-{i}" for i in range(3)]
    for name in names:
        client.adapt(name, SUPPORT)
    first = client.tenants(limit=1)
    assert len(first.tenants) == 1 and first.next_after == first.tenants[0]
    listed = list(client.iter_tenants(page_size=1))
    assert listed == sorted(listed) and len(listed) == len(set(listed))
    assert set(names) <= set(listed)
    for name in names:
        client.delete(name)
