"""API keys: 401 without a valid key, 403 outside its scope; tenant A's key can never touch tenant B."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from app.store import RedisStore
from app.web.gate import route_path
from harness.ports import free_port
from tests.web.conftest import ADMIN, ADMIN_KEY, SUPPORT, bearer

PUBLIC = ["/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/metrics", "/docs-assets/swagger-ui.css"]


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """Auth on (this module's default app)."""
    return make_client()


def create_key(client: TestClient, tenants: list[str], admin: bool = False) -> dict:
    response = client.post("/admin/keys", headers=ADMIN, json={"name": "t", "tenants": tenants, "admin": admin})
    assert response.status_code == 201, response.text
    return response.json()


def adapt(client: TestClient, tenant: str, headers: dict[str, str]):
    return client.post("/adapt", headers=headers, json={"tenant_id": tenant, "examples": SUPPORT})


def test_missing_and_unknown_keys_get_401(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer "}):
        response = client.post("/predict", headers=headers, json={"tenant_id": "a", "texts": ["x"]})
        assert response.status_code == 401 and response.json()["error"]["code"] == "missing_api_key"
        assert response.headers["www-authenticate"] == "Bearer"
    for path in ("/tenants/a", "/tenants", "/admin/keys", "/no-such-route"):
        assert client.get(path).status_code == 401  # deny by default, even before routing
    unknown = client.get("/tenants/a", headers=bearer("fsk_not-a-key"))
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "invalid_api_key"
    for path in PUBLIC:
        assert client.get(path).status_code == 200, path


def test_admin_manages_keys_stored_only_as_digests(client: TestClient, redis_store: RedisStore) -> None:
    created = create_key(client, ["acme"])
    key = created["key"]
    assert key.startswith("fsk_") and created["prefix"] == key[:8] and created["tenants"] == ["acme"]

    listed = client.get("/admin/keys", headers=ADMIN).json()["keys"]
    assert [k["key_id"] for k in listed] == [created["key_id"]] and "key" not in listed[0]

    redis = redis_store._client
    stored = b"".join(
        field + value
        for name in redis.scan_iter(match=f"{redis_store._prefix}:{{access}}:*")
        for field, value in redis.hgetall(name).items()
    )
    assert key.encode() not in stored and hashlib.sha256(key.encode()).hexdigest().encode() in stored

    assert client.get("/tenants", headers=bearer(key)).status_code == 200
    assert client.delete(f"/admin/keys/{created['key_id']}", headers=ADMIN).status_code == 204
    revoked = client.get("/tenants", headers=bearer(key))
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "invalid_api_key"
    missing = client.delete(f"/admin/keys/{created['key_id']}", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_key"
    no_scope = client.post("/admin/keys", headers=ADMIN, json={"name": "x"})
    assert no_scope.status_code == 422 and no_scope.json()["error"]["code"] == "validation_error"


def test_scoped_keys_cannot_manage_keys(client: TestClient) -> None:
    key = create_key(client, ["acme"])["key"]
    for method, path in (("get", "/admin/keys"), ("post", "/admin/keys"), ("delete", "/admin/keys/abc")):
        response = client.request(method, path, headers=bearer(key), json={"name": "x", "admin": True})
        assert response.status_code == 403 and response.json()["error"]["code"] == "admin_required"
    another_admin = create_key(client, [], admin=True)["key"]
    assert client.get("/admin/keys", headers=bearer(another_admin)).status_code == 200


def test_tenant_a_key_can_never_touch_tenant_b(client: TestClient) -> None:
    assert adapt(client, "tenant-b", ADMIN).status_code == 200
    b_version = client.get("/tenants/tenant-b", headers=ADMIN).json()["version"]
    key_a = bearer(create_key(client, ["tenant-a"])["key"])

    def forbidden(response) -> None:
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden_tenant"

    forbidden(adapt(client, "tenant-b", key_a))
    forbidden(client.post("/predict", headers=key_a, json={"tenant_id": "tenant-b", "texts": ["where is my card"]}))
    forbidden(client.get("/tenants/tenant-b", headers=key_a))
    forbidden(client.delete("/tenants/tenant-b", headers=key_a))
    forbidden(client.get("/tenants/tenant-b/versions", headers=key_a))  # any route under /tenants/{id}/
    forbidden(client.post("/tenants/tenant-b/rollback", headers=key_a, json={"version": 1}))
    forbidden(client.get("/tenants?tenant_id=tenant-b", headers=key_a))
    forbidden(client.post("/predict", headers=key_a, json={"tenant_id": ["tenant-b"], "texts": ["x"]}))
    duplicate = b'{"tenant_id": "tenant-a", "texts": ["x"], "tenant_id": "tenant-b"}'
    ambiguous = client.post("/predict", headers=key_a | {"content-type": "application/json"}, content=duplicate)
    assert ambiguous.status_code == 422 and ambiguous.json()["error"]["code"] == "invalid_json"
    unknown = client.post("/predict", headers=key_a, json={"tenant_id": "tenant-a", "texts": ["x"]})
    assert unknown.status_code == 404  # inside its scope, an ordinary answer

    # listing: only its own tenants, and only those with a model
    assert client.get("/tenants", headers=key_a).json() == {"tenants": [], "next_after": None}
    assert adapt(client, "tenant-a", key_a).status_code == 200
    assert client.get("/tenants", headers=key_a).json() == {"tenants": ["tenant-a"], "next_after": None}
    assert client.get("/tenants", headers=ADMIN).json() == {"tenants": ["tenant-a", "tenant-b"], "next_after": None}
    first_page = client.get("/tenants?limit=1", headers=ADMIN).json()
    assert first_page == {"tenants": ["tenant-a"], "next_after": "tenant-a"}
    second_page = client.get("/tenants?limit=1&after=tenant-a", headers=ADMIN).json()
    assert second_page == {"tenants": ["tenant-b"], "next_after": None}
    assert client.get("/tenants?limit=0", headers=ADMIN).status_code == 422

    # tenant A works end to end with its key; tenant B is untouched
    predicted = client.post("/predict", headers=key_a, json={"tenant_id": "tenant-a", "texts": ["refund please"]})
    assert predicted.status_code == 200 and predicted.json()["predictions"][0]["label"] == "refund"
    assert client.get("/tenants/tenant-a", headers=key_a).status_code == 200
    assert client.delete("/tenants/tenant-a", headers=key_a).status_code == 204
    assert client.get("/tenants/tenant-b", headers=ADMIN).json()["version"] == b_version


def test_admin_key_from_sha256_setting(make_client: Callable[..., TestClient]) -> None:
    other = "fsk_another-bootstrap-key"
    client = make_client(admin_key=None, admin_key_sha256=hashlib.sha256(other.encode()).hexdigest())
    assert client.get("/admin/keys", headers=bearer(other)).status_code == 200
    assert client.get("/admin/keys", headers=bearer(ADMIN_KEY)).status_code == 401


def test_open_mode_warns_loudly(make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fewshot"):
        client = make_client(auth_enabled=False)
    assert any("AUTHENTICATION IS DISABLED" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert client.get("/tenants").status_code == 200  # open: no key needed


def test_key_store_down_is_503_not_500(make_client: Callable[..., TestClient]) -> None:
    client = make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.5)
    response = client.get("/tenants/a", headers=bearer("fsk_any"))
    assert response.status_code == 503 and response.json()["error"]["code"] == "store_unavailable"
    assert 'fewshot_store_errors_total{source="access"}' in client.get("/metrics").text


def test_scope_checks_ignore_a_proxy_root_path() -> None:
    scope = {"type": "http", "path": "/api/tenants/tenant-b/versions", "root_path": "/api"}
    assert route_path(scope) == "/tenants/tenant-b/versions"
    assert route_path({"type": "http", "path": "/tenants/x"}) == "/tenants/x"
