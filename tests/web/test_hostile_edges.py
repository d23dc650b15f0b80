"""The HTTP layer against a hostile or careless caller: strict types, metric label values, log lines, public
answers, tenant ids, disconnects and HTTP edges."""

from __future__ import annotations

import ast
import contextlib
import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.config import Settings
from app.web.app import create_app
from harness.asgi import http_scope
from harness.ports import free_port
from tests.reliability.conftest import serve_in_thread, small_settings
from tests.web.conftest import ADMIN, SUPPORT, bearer, capture_logs

APP_DIR = Path(__file__).resolve().parents[2] / "app"


def error_code(response: Any) -> str:
    return response.json()["error"]["code"]


# --- Strict types -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("admin", ["yes", 1, "true", 1.0])
def test_a_non_boolean_admin_flag_creates_no_key(make_client: Callable[..., TestClient], admin: object) -> None:
    client = make_client()
    response = client.post("/admin/keys", headers=ADMIN, json={"name": "x", "tenants": ["t1"], "admin": admin})
    assert response.status_code == 422 and error_code(response) == "validation_error", response.text
    assert client.get("/admin/keys", headers=ADMIN).json()["keys"] == []


@pytest.mark.parametrize(
    "field", [{"top_k": True}, {"top_k": "2"}, {"top_k": 2.0}, {"version": "1"}, {"oos_threshold": "0.5"}]
)
def test_predict_refuses_strings_and_booleans_for_numbers(client: TestClient, field: dict[str, object]) -> None:
    response = client.post("/predict", json={"tenant_id": "t", "texts": ["x"], **field})
    assert response.status_code == 422 and error_code(response) == "validation_error", response.text


def test_json_numbers_keep_their_natural_types(client: TestClient) -> None:
    assert client.post("/adapt", json={"tenant_id": "t", "examples": SUPPORT, "inner_steps": 3}).status_code == 200
    predicted = client.post("/predict", json={"tenant_id": "t", "texts": ["x"], "top_k": 2, "oos_threshold": 0})
    assert predicted.status_code == 200, predicted.text  # an integer is a fine float
    assert client.post("/tenants/t/rollback", json={"version": "1"}).status_code == 422


# --- Metric label values from a closed set ---------------------------------------------------------------------


def _series(*names: str) -> int:
    return sum(len(metric.samples) for metric in REGISTRY.collect() if metric.name in names)


def test_odd_methods_and_paths_add_no_metric_series(client: TestClient) -> None:
    names = ("fewshot_http_requests", "fewshot_http_request_duration_seconds")
    client.request("M0000X", "/healthz")
    client.request("M0000X", "/odd-0")
    client.get("/odd-0")
    before = _series(*names)
    for i in range(1, 1001):
        client.request(f"M{i:04d}X", "/healthz" if i % 2 else f"/odd-{i}")
    assert _series(*names) == before
    text = client.get("/metrics").text
    assert 'method="other",route="/healthz"' in text and "M0001X" not in text


# --- Log forgery ------------------------------------------------------------------------------------------------

FORGED = "2026-11-29 16:00:00,000 INFO fewshot.access_log [forged] GET /admin 200"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_path_cannot_forge_a_log_line(make_client: Callable[..., TestClient], log_format: str) -> None:
    client = make_client(auth_enabled=False, log_format=log_format)
    logs = capture_logs()
    client.get("/x%0a" + FORGED.replace(" ", "%20") + "%0d%1b%e2%80%a8")
    lines = [line for line in logs.getvalue().splitlines() if line]
    assert not any(line.startswith("2026-11-29 16:00:00") for line in lines)
    (line,) = [line for line in lines if "forged" in line and "httpx" not in line]  # one line, escapes and all
    if log_format == "json":
        assert json.loads(line)["path"] == "/x\n" + FORGED + "\r\x1b\u2028"
    else:
        assert "/x\\n2026-11-29 16:00:00,000 INFO" in line and "\\r\\x1b\\u2028" in line


# --- No paths or addresses in public answers -------------------------------------------------------------------


def test_readyz_names_the_checkpoint_without_its_path(settings: Settings, real_model: Any, redis_store: Any) -> None:
    encoder, inner, _ = real_model
    with TestClient(create_app(settings, model=(encoder, inner, "/srv/secret/place/minilm-protomaml"))) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checkpoint"] == "minilm-protomaml"
    assert "/srv" not in ready.text


def test_readyz_during_an_outage_shows_no_address(real_model: Any) -> None:
    port = free_port()
    settings = Settings(store="redis", redis_url=f"redis://127.0.0.1:{port}/0", checkpoint="none", _env_file=None)
    with TestClient(create_app(settings, model=real_model)) as client:
        logs = capture_logs()
        ready = client.get("/readyz")
    assert ready.status_code == 503 and error_code(ready) == "store_unavailable"
    assert "127.0.0.1" not in ready.text and str(port) not in ready.text
    assert str(port) in logs.getvalue()  # the details go to the log


# --- Tenant ids start with a letter or digit -------------------------------------------------------------------

ODD_IDS = [".", "..", "-x", "_x", ".hidden"]


@pytest.mark.parametrize("tenant", ODD_IDS)
def test_odd_tenant_ids_are_refused_in_bodies(client: TestClient, tenant: str) -> None:
    for path, body in [
        ("/adapt", {"tenant_id": tenant, "examples": SUPPORT}),
        ("/predict", {"tenant_id": tenant, "texts": ["x"]}),
    ]:
        response = client.post(path, json=body)
        assert response.status_code == 422 and error_code(response) == "invalid_tenant_id", (path, response.text)


@pytest.mark.parametrize("tenant", ["-x", "_x", ".hidden"])
def test_odd_tenant_ids_are_refused_in_paths(client: TestClient, tenant: str) -> None:
    response = client.get(f"/tenants/{tenant}")
    assert response.status_code == 422 and error_code(response) == "invalid_tenant_id", response.text


def test_odd_tenant_ids_are_refused_in_key_scopes(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for tenant in ODD_IDS:
        response = client.post("/admin/keys", headers=ADMIN, json={"name": "x", "tenants": ["ok", tenant]})
        assert response.status_code == 422 and error_code(response) == "invalid_tenant_id", response.text


# --- A client that disconnects mid-body is not a server error --------------------------------------------------


def _requests_total(status: str) -> float:
    value = REGISTRY.get_sample_value(
        "fewshot_http_requests_total", {"method": "POST", "route": "/predict", "status": status}
    )
    return value or 0.0


def _disconnect_mid_body(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Send half a /predict body, then disconnect; the messages the app sent back."""
    messages = [
        {"type": "http.request", "body": b'{"tenant_id": "t1", "texts": ["', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []
    scope = http_scope(
        "POST",
        "/predict",
        [(b"content-type", b"application/json"), *((k.lower().encode(), v.encode()) for k, v in headers.items())],
    )

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        await client.app(scope, receive, send)

    assert client.portal is not None
    client.portal.call(call)
    return sent


@pytest.mark.parametrize("scoped", [True, False])
def test_a_disconnect_mid_body_is_a_499_not_a_500(make_client: Callable[..., TestClient], scoped: bool) -> None:
    client = make_client()
    headers = ADMIN
    if scoped:
        key = client.post("/admin/keys", headers=ADMIN, json={"name": "s", "tenants": ["t1"]}).json()["key"]
        headers = bearer(key)
    logs = capture_logs()
    errors_before, disconnects_before = _requests_total("500"), _requests_total("499")
    _disconnect_mid_body(client, headers)
    assert _requests_total("500") == errors_before
    assert _requests_total("499") == disconnects_before + 1
    text = logs.getvalue()
    assert "POST /predict 499" in text and "Traceback" not in text and "unhandled error" not in text


# --- HTTP edges -------------------------------------------------------------------------------------------------


def _raw_request(base: str, request: bytes) -> tuple[int, dict[str, Any] | None]:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)  # the server may answer and close before reading everything
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    content_type = re.search(rb"(?im)^content-type:\s*(\S+)", head)
    assert content_type is not None and content_type.group(1).startswith(b"application/json"), head
    return status, json.loads(body)


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(redis_url: str, real_model: Any, request: pytest.FixtureRequest) -> Any:
    """The same guarantees with either HTTP parser `fewshot serve` can run."""
    settings = small_settings(redis_url, "fewshot-edges", auth_enabled=False, http_parser=request.param)
    with serve_in_thread(create_app(settings, model=real_model), settings) as base:
        yield base


def _get_with_header(size: int) -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\nConnection: close\r\n\r\n"


def test_headers_up_to_16_kib_are_served(server: str) -> None:
    status, body = _raw_request(server, _get_with_header(15 * 1024))
    assert status == 200 and body == {"status": "ok"}


@pytest.mark.parametrize("size", [17 * 1024, 70_000, 200_000])
def test_larger_headers_get_a_json_431(server: str, size: int) -> None:
    status, body = _raw_request(server, _get_with_header(size))
    assert status == 431 and body is not None and body["error"]["code"] == "headers_too_large"


def test_a_malformed_request_gets_a_json_400(server: str) -> None:
    status, body = _raw_request(server, b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n")
    assert status == 400 and body is not None and body["error"]["code"] == "bad_request"


@pytest.mark.parametrize("path", ["/predict", "/adapt", "/admin/keys"])
def test_a_deeply_nested_body_is_invalid_json(client: TestClient, path: str) -> None:
    depth = 100_000
    for content in ("[" * depth + "]" * depth, '{"tenant_id": "t", "texts": ' + "[" * depth + "]" * depth + "}"):
        response = client.post(path, content=content, headers={"content-type": "application/json"})
        assert response.status_code == 422 and error_code(response) == "invalid_json", response.text


def _codes_in_source() -> set[str]:
    """Every error code literal the app can answer with: arguments of the error helpers and `"code": ...`."""
    helpers = {"invalid", "ServiceError", "error_response", "deny", "_error_response", "error_body"}
    codes: set[str] = set()
    for path in APP_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name in helpers:
                    codes.update(
                        arg.value
                        for arg in node.args
                        if isinstance(arg, ast.Constant)
                        and isinstance(arg.value, str)
                        and re.fullmatch(r"[a-z_]+", arg.value)
                    )
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "code" and isinstance(value, ast.Constant):
                        codes.add(value.value)
    return codes


def test_every_code_the_server_can_emit_is_documented() -> None:
    from app.web.error_codes import ERROR_CODES
    from app.web.errors import _HTTP_CODES

    emitted = _codes_in_source() | set(_HTTP_CODES.values())
    assert {"invalid_json", "rate_limited", "headers_too_large", "request_timeout", "too_few_labels"} <= emitted
    assert emitted - set(ERROR_CODES) == set()
    assert "http_error" not in emitted


def test_over_the_concurrency_limit_is_a_json_503(redis_url: str, real_model: Any) -> None:
    settings = small_settings(redis_url, "fewshot-busy", auth_enabled=False, limit_concurrency=2)
    with serve_in_thread(create_app(settings, model=real_model), settings) as base:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert _raw_request(base, request) == (200, {"status": "ok"})
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10):  # a second connection, idle
            status, body = _raw_request(base, request)
    assert status == 503 and body is not None and body["error"]["code"] == "overloaded"
