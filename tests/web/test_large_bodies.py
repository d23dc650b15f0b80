"""Large request bodies over HTTP: refused at their endpoint's caps while parsing (by the access gate or the
route, with the same answer), parsed once per request, and never on the event loop, which keeps answering."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.config import Settings
from app.web.app import create_app
from app.web.json_body import LOOP_BYTES, BodyCaps
from app.web.json_route import JsonBodyRoute
from tests.reliability.conftest import serve_in_thread, small_settings
from tests.web.conftest import ADMIN, SUPPORT, assert_error, bearer

JSON = {"content-type": "application/json"}
TINY_EXAMPLES = 450_000  # ~13 MB of {"text": "t1", "label": "l1"}, under the 16 MiB body limit


def tiny_examples_body(tail: bytes) -> bytes:
    return b'{"tenant_id": "acme", "examples": [' + b'{"text": "t1", "label": "l1"}, ' * TINY_EXAMPLES + tail


@pytest.fixture(params=["scoped key", "admin key", "auth off"])
def caller(request: pytest.FixtureRequest, make_client: Callable[..., TestClient]) -> tuple[TestClient, dict]:
    """A client and the headers of a caller the access gate parses bodies for (scoped key) or not."""
    if request.param == "auth off":
        return make_client(auth_enabled=False), {}
    client = make_client()
    if request.param == "admin key":
        return client, ADMIN
    created = client.post("/admin/keys", headers=ADMIN, json={"tenants": ["acme"]})
    return client, bearer(created.json()["key"])


@pytest.mark.parametrize("tail", [b'{"text": "t1", "label": "l1"}]}', b"and then no JSON at all"])
def test_a_13_mb_adapt_of_tiny_examples_is_refused_at_the_examples_cap(caller: tuple, tail: bytes) -> None:
    """Refused as soon as the list passes `max_examples`: what follows is never parsed (here: not even JSON)."""
    client, headers = caller
    body = tiny_examples_body(tail)
    assert 13_000_000 < len(body) < 16 * 1024 * 1024
    response = client.post("/adapt", headers=headers | JSON, content=body)
    assert_error(response, 422, "too_many_examples")
    assert response.json()["error"]["message"] == "examples: more than 5000 examples; the limit is 5000"


def test_16000_declared_labels_are_refused_at_the_labels_cap(caller: tuple) -> None:
    client, headers = caller
    labels = [f"label-{i}" for i in range(16_000)]
    response = client.post("/adapt", headers=headers, json={"tenant_id": "acme", "examples": SUPPORT, "labels": labels})
    assert_error(response, 422, "too_many_labels")


def test_a_body_naming_tenant_id_twice_is_refused_for_every_caller(caller: tuple) -> None:
    client, headers = caller
    duplicate = b'{"tenant_id": "acme", "texts": ["x"], "tenant_id": "other"}'
    assert_error(client.post("/predict", headers=headers | JSON, content=duplicate), 422, "invalid_json")


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/predict", {"tenant_id": "acme", "texts": ["x"] * 9}, "too_many_texts"),  # max_texts = 8
        ("/tenants/acme/suggest", {"texts": ["x"] * 51, "k": 1}, "too_many_texts"),  # max_examples = 50
        ("/tenants/acme/evaluate", {"examples": [{"text": "x", "label": "a"}] * 51}, "too_many_examples"),
        ("/adapt", {"tenant_id": "acme", "examples": SUPPORT, "remove_labels": ["x"] * 11}, "too_many_labels"),
        ("/predict", {"tenant_id": "acme", "texts": ["x"], "extra": list(range(1001))}, "too_many_items"),
    ],
)
def test_caps_answer_with_the_services_codes(client: TestClient, path: str, body: dict, code: str) -> None:
    assert_error(client.post(path, json=body), 422, code)


def test_key_scopes_keep_their_schema_bound_below_the_cap(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for n, code in ((1001, "validation_error"), (10_001, "too_many_items")):
        tenants = [f"t{i}" for i in range(n)]
        assert_error(client.post("/admin/keys", headers=ADMIN, json={"tenants": tenants}), 422, code)


def test_every_route_with_a_body_reads_it_through_json_body() -> None:
    app = create_app(Settings(_env_file=None))
    routes, with_body = list(app.routes), []
    while routes:
        route = routes.pop()
        routes.extend(getattr(getattr(route, "original_router", None), "routes", []))
        if isinstance(route, APIRoute) and route.body_field is not None:
            with_body.append(route.path)
            assert isinstance(route, JsonBodyRoute), route.path
    assert {"/adapt", "/predict", "/tenants/{tenant_id}/suggest", "/admin/keys"} <= set(with_body)


class CountingCaps(BodyCaps):
    """Caps that count parses and, when `gate` is set, hold each large body's parse until the gate opens."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.max_examples, settings.max_labels, settings.max_texts, settings.max_examples)
        self.parses = 0
        self.parsing = threading.Event()
        self.gate: threading.Event | None = None

    def parse(self, path: str, body: bytes) -> Any:
        self.parses += 1
        if self.gate is not None and len(body) > LOOP_BYTES:
            self.parsing.set()
            self.gate.wait(timeout=30)
        return super().parse(path, body)


def test_the_gate_and_the_route_share_one_parse(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    key = bearer(client.post("/admin/keys", headers=ADMIN, json={"tenants": ["acme"]}).json()["key"])
    caps = CountingCaps(Settings(_env_file=None))
    client.app.state.body_caps = caps  # type: ignore[attr-defined]
    response = client.post("/predict", headers=key, json={"tenant_id": "acme", "texts": ["x"]})
    assert_error(response, 404, "unknown_tenant")  # through the gate (scoped key) and the route
    assert caps.parses == 1


@pytest.fixture
def served_with_gated_caps(redis_url: str, redis_prefix: str, real_model: Any) -> Iterator[tuple[str, CountingCaps]]:
    settings = small_settings(redis_url, redis_prefix, auth_enabled=False)
    app = create_app(settings, model=real_model)
    caps = app.state.body_caps = CountingCaps(settings)
    caps.gate = threading.Event()
    with serve_in_thread(app, settings) as base:
        yield base, caps
        caps.gate.set()


def test_healthz_answers_while_a_large_body_is_being_parsed(served_with_gated_caps: tuple[str, CountingCaps]) -> None:
    """The parse of the large body waits for the test to have its /healthz answers: on the event loop it would
    hold the loop, and /healthz would time out."""
    base, caps = served_with_gated_caps
    assert caps.gate is not None
    body = json.dumps({"tenant_id": "acme", "examples": [{"text": "t1", "label": "l1"}] * 20_000}).encode()
    answers: dict[str, httpx.Response] = {}

    def post_large() -> None:
        answers["adapt"] = httpx.post(f"{base}/adapt", content=body, headers=JSON, timeout=60)

    poster = threading.Thread(target=post_large)
    poster.start()
    try:
        assert caps.parsing.wait(timeout=30)
        health = [httpx.get(f"{base}/healthz", timeout=10).status_code for _ in range(3)]
    finally:
        caps.gate.set()
        poster.join(timeout=60)
    assert health == [200, 200, 200]
    assert_error(answers["adapt"], 422, "too_many_examples")  # max_examples = 12
