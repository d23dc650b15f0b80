"""Real data through the service path: CLINC150, 5 intents x 5 shots, held-out test queries."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "clinc150_sample.jsonl"


def test_clinc150_five_way_five_shot_accuracy(client: TestClient) -> None:
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    support = [{"text": r["text"], "label": r["label"]} for r in rows if r["split"] == "train"]
    queries = [r for r in rows if r["split"] == "test"]
    assert len(support) == 25 and len(queries) == 100

    adapted = client.post("/adapt", json={"tenant_id": "clinc", "examples": support})
    assert adapted.status_code == 200, adapted.text
    correct = 0
    for start in range(0, len(queries), 8):  # the test settings allow 8 texts per request
        batch = queries[start : start + 8]
        response = client.post(
            "/predict", json={"tenant_id": "clinc", "texts": [q["text"] for q in batch], "oos_threshold": -1}
        )
        assert response.status_code == 200, response.text
        correct += sum(p["label"] == q["label"] for p, q in zip(response.json()["predictions"], batch, strict=True))
    assert correct / len(queries) >= 0.9
