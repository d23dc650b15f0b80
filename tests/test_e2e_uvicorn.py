"""End to end: `fewshot serve` as a real uvicorn process, over HTTP, backed by a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import SUPPORT
from tests.redis_server import free_port


@pytest.fixture
def server(redis_url: str, redis_prefix: str) -> Iterator[str]:
    port = free_port()
    env = os.environ | {
        "FEWSHOT_STORE": "redis",
        "FEWSHOT_REDIS_URL": redis_url,
        "FEWSHOT_REDIS_PREFIX": redis_prefix,
        "FEWSHOT_CHECKPOINT": "none",
        "FEWSHOT_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {process.stdout.read().decode() if process.stdout else ''}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_adapt_and_predict_over_http(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as http:
        adapted = http.post("/adapt", json={"tenant_id": "e2e", "examples": SUPPORT})
        assert adapted.status_code == 200, adapted.text
        predicted = http.post("/predict", json={"tenant_id": "e2e", "texts": ["where is my card", "refund please"]})
        assert predicted.status_code == 200
        assert [p["label"] for p in predicted.json()["predictions"]] == ["card_arrival", "refund"]
        assert http.get("/tenants/e2e").json()["version"] == adapted.json()["version"]
        assert http.get("/docs").status_code == 200
        bad = http.post("/predict", content=b"{", headers={"content-type": "application/json"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_json"
        assert http.delete("/tenants/e2e").status_code == 204
