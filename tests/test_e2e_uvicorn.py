"""End to end: `fewshot serve` as a real uvicorn process, over HTTP, backed by a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from harness.server_proc import fewshot_server
from tests.web.conftest import SUPPORT


@pytest.fixture
def server(redis_url: str, redis_prefix: str) -> Iterator[str]:
    """`python -m app.cli serve` (what `fewshot serve` runs) on a free port, backed by the test Redis."""
    with fewshot_server(redis_url, prefix=redis_prefix, extra_env={"FEWSHOT_CHECKPOINT": "none"}) as url:
        yield url


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
