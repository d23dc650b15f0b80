"""Client mistakes get a 4xx with a machine-readable code, and nothing stored changes.

None of these requests reaches the encoder, so the app runs on the tiny random encoder; the services' own
validation codes are tested without HTTP in tests/services/test_validation.py (here: one of them, end to end).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams
from app.store import RedisStore
from app.web.app import create_app
from tests.web.conftest import SUPPORT, assert_error


@pytest.fixture
def client(settings: Settings, tiny_encoder: SentenceEncoder, redis_store: RedisStore) -> Iterator[TestClient]:
    """Auth off, the tiny encoder, a real Redis."""
    model = (tiny_encoder, InnerLoopParams.constant(2, 0.04, 10.0), None)
    with TestClient(create_app(settings, model=model)) as test_client:
        yield test_client


@pytest.fixture
def adapted(client: TestClient, redis_store: RedisStore) -> bytes:
    client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT})
    stored = redis_store.load("acme")
    assert stored is not None
    return stored.head


def _one_label() -> list[dict[str, str]]:
    return [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"examples": _one_label()}, "too_few_labels"),
        ({"examples": SUPPORT, "inner_steps": -1}, "validation_error"),
        ({"examples": SUPPORT, "surprise": True}, "validation_error"),
        ({"examples": [{"text": "no label"}]}, "missing_label"),
    ],
)
def test_bad_adapt_changes_nothing(
    client: TestClient, redis_store: RedisStore, adapted: bytes, payload: dict[str, Any], code: str
) -> None:
    response = client.post("/adapt", json={"tenant_id": "acme", **payload})
    assert_error(response, 422, code)
    stored = redis_store.load("acme")
    assert stored is not None and stored.version == 1 and stored.head == adapted


@pytest.mark.parametrize("tenant_id", ["", "has space", "slash/y", "x" * 65, "ümlaut", None, 7])
def test_bad_tenant_id(client: TestClient, redis_store: RedisStore, tenant_id: Any) -> None:
    response = client.post("/adapt", json={"tenant_id": tenant_id, "examples": SUPPORT})
    assert_error(response, 422, "invalid_tenant_id")
    assert not list(redis_store._client.scan_iter(match=f"{redis_store._prefix}:*"))  # nothing written
    predicted = client.post("/predict", json={"tenant_id": tenant_id, "texts": ["hi"]})
    assert_error(predicted, 422, "invalid_tenant_id")


def test_bad_tenant_id_in_path(client: TestClient) -> None:
    assert_error(client.get("/tenants/" + "x" * 65), 422, "invalid_tenant_id")
    assert_error(client.delete("/tenants/bad%20id"), 422, "invalid_tenant_id")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"texts": []}, "no_texts"),
        ({"texts": "not a list"}, "validation_error"),
        ({"texts": [1, 2]}, "validation_error"),
    ],
)
def test_bad_predict(client: TestClient, adapted: bytes, payload: dict[str, Any], code: str) -> None:
    assert_error(client.post("/predict", json={"tenant_id": "acme", **payload}), 422, code)


def test_unknown_tenant_is_404(client: TestClient) -> None:
    assert_error(client.post("/predict", json={"tenant_id": "nobody", "texts": ["hi"]}), 404, "unknown_tenant")
    assert_error(client.get("/tenants/nobody"), 404, "unknown_tenant")


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"string"', b'{"tenant_id": "a",}'])
def test_malformed_json(client: TestClient, adapted: bytes, redis_store: RedisStore, raw: bytes) -> None:
    for path in ("/adapt", "/predict"):
        response = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] in {"invalid_json", "validation_error"}
    assert redis_store.load("acme").head == adapted  # type: ignore[union-attr]


def test_not_json_at_all_is_invalid_json(client: TestClient) -> None:
    response = client.post("/adapt", content=b"{oops", headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_json")


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/adapt"), 405, "method_not_allowed")
