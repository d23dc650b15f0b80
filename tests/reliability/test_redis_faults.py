"""Redis faults against a redis-server this test owns: hang, crash, restart with AOF.

While Redis is frozen or down, /adapt, /predict and /tenants answer 503 `store_unavailable` within a bounded
time, /readyz fails and /healthz stays up; once Redis is back the same app recovers without a restart, and
every /adapt acknowledged before the crash is still there (AOF).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.web.app import create_app
from harness.redis_proc import RedisProcess
from tests.reliability.conftest import small_settings
from tests.web.conftest import CARDS, FX, REFUND, support

REDIS_TIMEOUT_S = 1.0
BOUND_S = 10.0  # generous: a store call takes at most ~2 x REDIS_TIMEOUT_S, a request makes at most 2-3 calls
SUPPORT = support(("card", CARDS[:2]), ("fx", FX[:2]), ("refund", REFUND[:2]))


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path, appendonly=True)
    process.start()
    yield process
    process.stop()


def _timed(client: TestClient, method: str, path: str, body: dict | None = None) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = client.request(method, path, json=body)
    return response, time.monotonic() - started


def _assert_unavailable(client: TestClient) -> None:
    for method, path, body in (
        ("POST", "/adapt", {"tenant_id": "t-new", "examples": SUPPORT}),
        ("POST", "/predict", {"tenant_id": "t-0", "texts": ["where is my card"]}),
        ("GET", "/tenants/t-0", None),
    ):
        response, elapsed = _timed(client, method, path, body)
        assert response.status_code == 503, (path, response.text)
        assert response.json()["error"]["code"] == "store_unavailable"
        assert elapsed < BOUND_S, f"{path} took {elapsed:.1f} s with Redis unavailable"
    ready, elapsed = _timed(client, "GET", "/readyz")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "store_unavailable"
    assert elapsed < BOUND_S
    assert client.get("/healthz").json() == {"status": "ok"}


def test_outage_is_bounded_503_then_recovers_and_keeps_acknowledged_writes(
    redis_process: RedisProcess, real_model
) -> None:
    settings = small_settings(redis_process.url, "faults", redis_timeout_s=REDIS_TIMEOUT_S)
    acknowledged: dict[str, int] = {}
    with TestClient(create_app(settings, model=real_model)) as client:
        for i in range(3):
            adapted = client.post("/adapt", json={"tenant_id": f"t-{i}", "examples": SUPPORT})
            assert adapted.status_code == 200
            acknowledged[f"t-{i}"] = adapted.json()["version"]
        assert client.post("/predict", json={"tenant_id": "t-0", "texts": ["hi"]}).status_code == 200

        # 1. a hung Redis (SIGSTOP: connections open, nothing answers): socket timeouts, not hung workers
        redis_process.freeze()
        _assert_unavailable(client)

        # 2. writers keep adapting while Redis crashes (SIGKILL); only acknowledged writes are promised
        redis_process.kill()
        _assert_unavailable(client)  # connection refused: fast 503s

        # 3. restart on the same port and AOF directory: the same app recovers by itself
        redis_process.start()
        deadline = time.monotonic() + BOUND_S
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the app did not recover after Redis came back"
            time.sleep(0.1)
        for tenant, version in acknowledged.items():
            described = client.get(f"/tenants/{tenant}")
            assert described.status_code == 200, described.text
            assert described.json()["version"] == version and described.json()["labels"] == ["card", "fx", "refund"]
            predicted = client.post("/predict", json={"tenant_id": tenant, "texts": ["refund my money"]})
            assert predicted.status_code == 200 and predicted.json()["version"] == version
        adapted = client.post("/adapt", json={"tenant_id": "t-0", "examples": SUPPORT})
        assert adapted.status_code == 200 and adapted.json()["version"] == acknowledged["t-0"] + 1


def test_every_acknowledged_adapt_survives_a_crash_mid_stream(redis_process: RedisProcess, real_model) -> None:
    """A writer adapts tenant after tenant; Redis is SIGKILLed mid-stream and restarted from its AOF."""
    settings = small_settings(redis_process.url, "aof", redis_timeout_s=REDIS_TIMEOUT_S)
    acknowledged: dict[str, int] = {}
    failures: list[tuple[int, str]] = []
    stop = threading.Event()
    with TestClient(create_app(settings, model=real_model)) as client:

        def writer() -> None:
            i = 0
            while not stop.is_set():
                response = client.post("/adapt", json={"tenant_id": f"w-{i}", "examples": SUPPORT})
                if response.status_code == 200:
                    acknowledged[f"w-{i}"] = response.json()["version"]
                else:
                    failures.append((response.status_code, response.json()["error"]["code"]))
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 15 and time.monotonic() < deadline:
            time.sleep(0.02)
        redis_process.kill()
        while not failures and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        thread.join(timeout=30)
        assert len(acknowledged) >= 15 and failures, "the writer never overlapped the crash"
        assert set(failures) == {(503, "store_unavailable")}

        redis_process.start()
        for tenant, version in acknowledged.items():
            described = client.get(f"/tenants/{tenant}")
            assert described.status_code == 200, f"acknowledged {tenant} v{version} lost: {described.text}"
            assert described.json()["version"] == version
