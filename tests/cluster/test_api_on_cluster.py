"""The HTTP API, API keys and rate limits on a real Redis Cluster (3 primaries + 3 replicas, one per session)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.store.client import connect, primaries
from app.web.app import create_app
from harness.redis_cluster import LocalCluster
from tests.redis_server import delete_prefix
from tests.web.conftest import ADMIN, ADMIN_KEY, SUPPORT, bearer

TENANTS = [f"tenant-{i}" for i in range(6)]


@pytest.fixture
def make_client(real_model: Any, redis_cluster: LocalCluster, redis_prefix: str) -> Iterator[Callable[..., TestClient]]:
    """`make_client(**settings)`: a started app on the cluster, auth on with ADMIN_KEY; keys removed afterwards."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> TestClient:
            values: dict[str, Any] = {
                "store": "redis",
                "redis_url": redis_cluster.url,
                "redis_prefix": redis_prefix,
                "checkpoint": "none",
                "inner_steps": 5,
                "auth_enabled": True,
                "admin_key": ADMIN_KEY,
                "_env_file": None,
            } | overrides
            return stack.enter_context(TestClient(create_app(Settings(**values), model=real_model)))

        yield make
    delete_prefix(connect(redis_cluster.url), redis_prefix)


def test_tenants_spread_over_the_primaries_adapt_predict_list_rollback_delete(
    make_client: Callable[..., TestClient], redis_cluster: LocalCluster, redis_prefix: str
) -> None:
    client = make_client()
    slots_on = {redis_cluster.primary_for(f"{redis_prefix}:{{{tenant}}}:model").port for tenant in TENANTS}
    assert len(slots_on) >= 2  # the tenants live on different primaries
    for tenant in TENANTS:
        adapted = client.post("/adapt", headers=ADMIN, json={"tenant_id": tenant, "examples": SUPPORT})
        assert adapted.status_code == 200 and adapted.json()["version"] == 1, adapted.text
    listed = client.get("/tenants", headers=ADMIN).json()
    assert sorted(listed["tenants"]) == TENANTS

    predicted = client.post("/predict", headers=ADMIN, json={"tenant_id": TENANTS[0], "texts": ["refund me please"]})
    assert predicted.status_code == 200 and predicted.json()["predictions"][0]["label"] == "refund"
    smaller = [example for example in SUPPORT if example["label"] != "refund"]
    assert (
        client.post("/adapt", headers=ADMIN, json={"tenant_id": TENANTS[0], "examples": smaller}).json()["version"] == 2
    )
    versions = client.get(f"/tenants/{TENANTS[0]}/versions", headers=ADMIN).json()
    assert [entry["version"] for entry in versions["versions"]] == [2, 1]
    rolled = client.post(f"/tenants/{TENANTS[0]}/rollback", headers=ADMIN, json={"version": 1})
    assert rolled.status_code == 200 and rolled.json()["version"] == 3
    assert client.get(f"/tenants/{TENANTS[0]}", headers=ADMIN).json()["labels"] == sorted({e["label"] for e in SUPPORT})
    assert client.delete(f"/tenants/{TENANTS[1]}", headers=ADMIN).status_code == 204
    assert client.get(f"/tenants/{TENANTS[1]}", headers=ADMIN).status_code == 404


def test_api_keys_on_the_cluster(make_client: Callable[..., TestClient], redis_cluster: LocalCluster) -> None:
    client = make_client()
    created = client.post("/admin/keys", headers=ADMIN, json={"tenants": ["acme"]}).json()
    scoped = bearer(created["key"])
    assert client.post("/adapt", headers=scoped, json={"tenant_id": "acme", "examples": SUPPORT}).status_code == 200
    assert client.get("/tenants/other", headers=scoped).status_code == 403
    assert [k["key_id"] for k in client.get("/admin/keys", headers=ADMIN).json()["keys"]] == [created["key_id"]]
    assert client.delete(f"/admin/keys/{created['key_id']}", headers=ADMIN).status_code == 204
    assert client.get("/tenants/acme", headers=scoped).status_code == 401


def test_rate_limit_per_key_on_the_cluster(
    make_client: Callable[..., TestClient], redis_cluster: LocalCluster, redis_prefix: str
) -> None:
    client = make_client(rate_limit_requests=3, rate_limit_window_s=60)
    key_a = bearer(client.post("/admin/keys", headers=ADMIN, json={"tenants": ["a"]}).json()["key"])
    key_b = bearer(client.post("/admin/keys", headers=ADMIN, json={"tenants": ["b"]}).json()["key"])
    assert [client.get("/tenants", headers=key_a).status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get("/tenants", headers=key_a)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert client.get("/tenants", headers=key_b).status_code == 200  # per key
    counters = [
        name
        for node in primaries(connect(redis_cluster.url))
        for name in node.scan_iter(match=f"{redis_prefix}:ratelimit:*")
    ]
    assert len(counters) == 3  # the admin key's, a's and b's counters, each with its expiry
    client_ = connect(redis_cluster.url)
    assert all(0 < client_.ttl(name) <= 61 for name in counters)
