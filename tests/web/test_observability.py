"""Prometheus metrics, JSON logs with a request id, and no texts or labels in the logs by default."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.web.conftest import ADMIN, SUPPORT, capture_logs

SECRET = "zebra-confidential-utterance"


def exercise(client: TestClient) -> None:
    examples = [
        *SUPPORT,
        {"text": SECRET, "label": "secret_label_xyz"},
        {"text": SECRET + "!", "label": "secret_label_xyz"},
    ]
    assert client.post("/adapt", headers=ADMIN, json={"tenant_id": "obs", "examples": examples}).status_code == 200
    predicted = client.post("/predict", headers=ADMIN, json={"tenant_id": "obs", "texts": [SECRET, "refund please"]})
    assert predicted.status_code == 200


def test_metrics_cover_routes_operations_and_cache(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    exercise(client)
    client.get("/tenants/obs")  # 401: refused requests are counted too
    text = client.get("/metrics").text
    assert 'fewshot_http_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'fewshot_http_requests_total{method="GET",route="/tenants/{tenant_id}",status="401"}' in text
    assert 'fewshot_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/adapt"}' in text
    assert 'fewshot_operation_seconds_count{operation="adapt",stage="total"}' in text
    assert 'fewshot_operation_seconds_count{operation="predict",stage="embed"}' in text
    assert 'fewshot_encoder_batch_texts_count{operation="predict"}' in text
    assert 'fewshot_encoder_batch_texts_count{operation="encoder_pass"}' in text  # the micro-batcher's passes
    assert 'fewshot_access_denied_total{code="missing_api_key"}' in text
    assert "fewshot_tenants_cached 1.0" in text
    assert "fewshot_store_errors_total" in text


def test_json_logs_carry_the_request_id_and_no_payloads(make_client: Callable[..., TestClient]) -> None:
    client = make_client(log_format="json")
    logs = capture_logs()
    exercise(client)
    tagged = client.get("/healthz", headers={"X-Request-ID": "req-42"})
    assert tagged.headers["x-request-id"] == "req-42"
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32 and generated != "req-42"
    assert client.get("/healthz", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"] != "bad id\n"

    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "fewshot.access_log"]
    assert {"request_id", "route", "status", "duration_ms", "method", "key_id", "ts", "level"} <= set(access[0])
    assert any(line["request_id"] == "req-42" and line["route"] == "/healthz" for line in access)
    assert {line["route"] for line in access} >= {"/adapt", "/predict"}
    assert SECRET not in logs.getvalue() and "secret_label_xyz" not in logs.getvalue()


def test_payloads_are_logged_only_when_asked(make_client: Callable[..., TestClient]) -> None:
    client = make_client(log_format="json", log_payloads=True)
    logs = capture_logs()
    exercise(client)
    assert SECRET in logs.getvalue()
