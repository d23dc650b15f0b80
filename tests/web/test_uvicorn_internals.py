"""The uvicorn internals `app/web/server.py` builds on are still where it expects them.

server.py subclasses uvicorn's protocol classes (`H11Protocol`, `HttpToolsProtocol`): it overrides their
methods and reads or swaps attributes their constructors set. pyproject.toml pins uvicorn to the range whose
source was read for this; these checks fail, on an upgrade, as soon as one of those names or signatures moves.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from packaging.requirements import Requirement
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.h11_impl import RequestResponseCycle as H11Cycle
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle as HttpToolsCycle
from uvicorn.server import ServerState

from app.web.server import DeadlineH11Protocol, DeadlineHttpToolsProtocol

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

# method -> its parameters after `self`, as server.py overrides or calls it
OVERRIDDEN = {
    "connection_made": ["transport"],
    "connection_lost": ["exc"],
    "data_received": ["data"],
    "send_400_response": ["msg"],
}
OVERRIDDEN_H11 = {"handle_events": [], "on_response_complete": []}
OVERRIDDEN_HTTPTOOLS = {"on_message_begin": [], "on_headers_complete": [], "on_message_complete": []}
# attributes the constructor sets that server.py reads, or replaces with its own (`app`, `limit_concurrency`)
ATTRIBUTES = ["app", "limit_concurrency", "connections", "tasks", "loop", "logger", "cycle"]

PROTOCOLS = [
    (H11Protocol, DeadlineH11Protocol, {**OVERRIDDEN, **OVERRIDDEN_H11}),
    (HttpToolsProtocol, DeadlineHttpToolsProtocol, {**OVERRIDDEN, **OVERRIDDEN_HTTPTOOLS}),
]


async def _app(scope: object, receive: object, send: object) -> None:  # pragma: no cover - never called
    raise AssertionError


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _parameters(function: object) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]  # type: ignore[arg-type]


def test_the_installed_uvicorn_is_in_the_pinned_range() -> None:
    pins = re.findall(r'"(uvicorn[^"]*)"', PYPROJECT.read_text(encoding="utf-8"))
    assert len(pins) == 1, pins
    requirement = Requirement(pins[0])
    assert requirement.specifier.contains(uvicorn.__version__), (uvicorn.__version__, str(requirement))
    assert any(spec.operator == "<" for spec in requirement.specifier), "uvicorn needs an upper bound"


@pytest.mark.parametrize(("base", "ours", "methods"), PROTOCOLS, ids=lambda value: getattr(value, "__name__", ""))
def test_the_methods_server_py_overrides_keep_their_signatures(base: type, ours: type, methods: dict) -> None:
    ours_defines = {name for cls in ours.__mro__[: ours.__mro__.index(base)] for name in vars(cls)}
    assert {name for name in ours_defines if hasattr(base, name) and not name.startswith("__")} == set(methods)
    for name, parameters in methods.items():
        assert _parameters(getattr(base, name)) == parameters, name


@pytest.mark.parametrize(("base", "ours", "methods"), PROTOCOLS, ids=lambda value: getattr(value, "__name__", ""))
def test_the_constructor_sets_the_attributes_server_py_uses(
    base: type, ours: type, methods: dict, loop: asyncio.AbstractEventLoop
) -> None:
    config = Config(_app, limit_concurrency=7, h11_max_incomplete_event_size=16 * 1024)
    protocol = base(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    missing = [name for name in ATTRIBUTES if name not in vars(protocol)]
    assert missing == []
    assert (protocol.limit_concurrency, protocol.cycle, protocol.loop) == (7, None, loop)
    if base is H11Protocol:
        assert protocol.conn._max_incomplete_event_size == 16 * 1024  # the head cap reaches h11


@pytest.mark.parametrize(
    ("base", "starts_requests"),
    [(H11Protocol, "handle_events"), (HttpToolsProtocol, "on_headers_complete")],
    ids=["h11", "httptools"],
)
def test_a_request_runs_self_app_after_uvicorns_own_concurrency_check(base: type, starts_requests: str) -> None:
    """server.py moves `limit_concurrency` aside and wraps `app`: uvicorn must read both per request."""
    source = inspect.getsource(getattr(base, starts_requests))
    assert "self.limit_concurrency is not None" in source
    assert "app = self.app" in source


@pytest.mark.parametrize("cycle", [H11Cycle, HttpToolsCycle], ids=["h11", "httptools"])
def test_a_cycle_reports_whether_its_response_started_and_completed(cycle: type) -> None:
    source = inspect.getsource(cycle.__init__)
    assert "self.response_started = False" in source
    assert "self.response_complete = False" in source
