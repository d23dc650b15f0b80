"""Schemathesis against the app's own OpenAPI schema: every operation, positive and negative data.

Requests go in-process to the ASGI app (real encoder, real Redis, small limits so valid bodies are cheap).
Every response must be a non-5xx whose status code, content type, headers and body match what the schema
documents for that operation; data that violates the schema must be rejected with a 4xx.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from pydantic import SecretStr

from app.store import RedisStore
from app.web.app import create_app
from harness.fuzz import fuzz_schema
from tests.reliability.conftest import small_settings
from tests.web.conftest import SUPPORT

ADMIN_KEY = "fsk_fuzz-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}  # auth on, as deployed; the admin key may call everything
EXAMPLES_PER_OPERATION_AND_MODE = 80  # x 2 modes x every operation: thousands of requests in all


@pytest.fixture
def api_schema(redis_url: str, real_model: Any) -> Iterator[Any]:
    prefix = f"fewshot-fuzz-{uuid.uuid4().hex[:8]}"
    settings_ = small_settings(redis_url, prefix, auth_enabled=True, admin_key=SecretStr(ADMIN_KEY))
    app = create_app(settings_, model=real_model)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        yield schema
    finally:
        from schemathesis.python.asgi import shutdown_lifespans

        shutdown_lifespans()
        store = RedisStore(redis_url, prefix=prefix)
        for key in store._client.scan_iter(match=f"{prefix}:*"):
            store._client.delete(key)
        store.close()


def _seed(schema: Any) -> None:
    """Adapt `acme-support` (the documented example tenant), so generated requests can also reach a model."""
    from schemathesis.python.asgi import get_client

    with get_client(schema.app) as client:
        body = {"tenant_id": "acme-support", "examples": SUPPORT}
        response = client.post("/adapt", json=body, headers=AUTH)
        assert response.status_code == 200, response.text


def test_every_operation_survives_generated_requests(api_schema: Any) -> None:
    _seed(api_schema)
    run = fuzz_schema(api_schema, EXAMPLES_PER_OPERATION_AND_MODE, AUTH)
    statuses, failures = run.statuses, run.failures
    operations = {key[0] for key in statuses}
    assert len(operations) >= 6
    for operation, mode in run.unsatisfiable:  # nothing to make invalid: no parameters and no body
        assert mode == "negative" and not operation.body and not operation.path_parameters
    total = sum(statuses.values())
    print(f"\nschemathesis: {total} requests over {len(operations)} operations")
    for key, count in sorted(statuses.items()):
        print(f"  {key[0]:40s} {key[1]:8s} {key[2]}: {count}")
    assert not failures, "\n\n".join(failures)
    assert total >= 1000
    assert not any(status >= 500 for _, _, status in statuses), "a 5xx slipped through the checks"
    # positive data really reached the model (not only validation errors)
    assert statuses[("POST /predict", "positive", 200)] + statuses[("POST /adapt", "positive", 200)] > 0
