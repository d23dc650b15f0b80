"""A client that disconnects mid-/evaluate stops its work: the report stops at its next fit, over real HTTP."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import app.ml.tenant_report as tenant_report
from app.ml.work import current_work
from app.web.app import create_app
from tests.reliability.conftest import serve_in_thread, small_settings
from tests.web.conftest import SUPPORT


def _send_and_leave(base: str, path: str, body: dict[str, Any], started: threading.Event) -> None:
    """POST `body`, wait until the server has started on it, then close the connection without reading."""
    url = urlsplit(base)
    payload = json.dumps(body).encode()
    with socket.create_connection((url.hostname, url.port)) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}"
        sock.sendall(head.encode() + b"\r\n\r\n" + payload)
        assert started.wait(30)


def test_a_report_whose_client_disconnects_stops_at_its_next_fit(
    redis_url: str, real_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = small_settings(redis_url, "fewshot-disconnect", auth_enabled=False, max_examples=50, max_labels=10)
    fitting, fits, seen_cancel = threading.Event(), [], []
    fit = tenant_report.fit_embedded

    def first_fit_waits_for_the_disconnect(*args: Any, **kwargs: Any) -> Any:
        fits.append(1)
        if len(fits) == 1:
            fitting.set()  # the client may leave now
            work = current_work()
            seen_cancel.append(_wait_until(lambda: work.cancelled))
        return fit(*args, **kwargs)

    monkeypatch.setattr(tenant_report, "fit_embedded", first_fit_waits_for_the_disconnect)
    with serve_in_thread(create_app(settings, model=real_model), settings) as base:
        assert httpx.post(f"{base}/adapt", json={"tenant_id": "t", "examples": SUPPORT}, timeout=60).status_code == 200
        _send_and_leave(base, "/tenants/t/evaluate", {}, fitting)
        assert _wait_until(lambda: len(seen_cancel) == 1)
        again = httpx.post(f"{base}/tenants/t/evaluate", json={}, timeout=60).json()
    assert seen_cancel == [True]  # the server noticed the disconnect and cancelled the work
    assert not again["cached"]  # nothing half-computed was cached
    assert len(fits) == 1 + again["report"]["n_folds"] * 2  # the abandoned report ran no fit after its first


def _wait_until(condition: Any, timeout_s: float = 20.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return True
        done.wait(0.01)
    return False
