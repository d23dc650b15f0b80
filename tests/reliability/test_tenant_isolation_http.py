"""Tenant isolation over real HTTP (uvicorn + Redis + the real encoder): no lost appends to a new tenant, and a
tenant sending malformed texts never changes another tenant's answers."""

from __future__ import annotations

import itertools
import json
import threading

import httpx
import pytest

from app.web.app import create_app
from tests.reliability.conftest import serve_in_thread, small_settings
from tests.web.conftest import CARDS, FX, REFUND

APPENDERS = 16
STEPS = 3


def appended(writer: int) -> list[dict[str, str]]:
    """Two examples under two labels (a new tenant needs two labels from its first append)."""
    return [
        {"text": f"{CARDS[writer % 3]} #{writer}", "label": "card"},
        {"text": f"{REFUND[writer % 3]} #{writer}", "label": "refund"},
    ]


@pytest.mark.slow
@pytest.mark.parametrize("after_delete", [False, True])
def test_concurrent_appends_to_a_tenant_without_a_model_lose_no_acknowledged_example(
    real_model, redis_url: str, redis_prefix: str, redis_store, after_delete: bool
) -> None:
    settings = small_settings(redis_url, redis_prefix, max_examples=2 * APPENDERS + 6)
    tenant = "fresh"
    acknowledged: dict[int, int] = {}  # version -> writer
    refused: list[int] = []
    errors: list[str] = []
    start = threading.Barrier(APPENDERS)
    with serve_in_thread(create_app(settings, model=real_model), settings) as base:
        if after_delete:
            with httpx.Client(base_url=base, timeout=60) as http:
                seeded = http.post("/adapt", json={"tenant_id": tenant, "examples": appended(99), "inner_steps": 1})
                assert seeded.status_code == 200
                assert http.delete(f"/tenants/{tenant}").status_code == 204

        def append(writer: int) -> None:
            body = {"tenant_id": tenant, "examples": appended(writer), "mode": "append", "inner_steps": STEPS}
            with httpx.Client(base_url=base, timeout=120) as http:
                start.wait()
                response = http.post("/adapt", json=body)
            if response.status_code == 200:
                acknowledged[response.json()["version"]] = writer
            elif response.status_code == 409 and response.json()["error"]["code"] == "concurrent_update":
                refused.append(writer)
            else:
                errors.append(f"{response.status_code} {response.text}")

        threads = [threading.Thread(target=append, args=(w,)) for w in range(APPENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)

    assert not errors, errors[:3]
    assert len(acknowledged) + len(refused) == APPENDERS  # versions are unique: none acknowledged twice
    assert acknowledged, "no append succeeded"
    stored = redis_store.load_support(tenant)
    expected = {(e["text"], e["label"]) for writer in acknowledged.values() for e in appended(writer)}
    assert {(e["text"], e["label"]) for e in stored} == expected  # every acknowledged example, nothing else
    assert redis_store.current_version(tenant) == max(acknowledged)
    # acknowledged in version order, each stored support set grows by exactly its writer's examples
    history = sorted(acknowledged)
    for older, newer in itertools.pairwise(history):
        before = {(e["text"], e["label"]) for e in redis_store.load_support(tenant, version=older) or []}
        after = {(e["text"], e["label"]) for e in redis_store.load_support(tenant, version=newer) or []}
        if before and after:  # both still retained
            assert after - before == {(e["text"], e["label"]) for e in appended(acknowledged[newer])}


MALFORMED: list[bytes] = [
    json.dumps({"tenant_id": "hostile", "texts": ["x\ud800"]}).encode(),
    json.dumps({"tenant_id": "hostile", "texts": ["fine", "\ud800\udfff\ud800"]}).encode(),
    json.dumps({"tenant_id": "hostile", "texts": ["\u200b\ufeff"]}).encode(),
    json.dumps(
        {"tenant_id": "hostile", "examples": [{"text": "a\udc00", "label": "x"}, {"text": "b", "label": "y"}]}
    ).encode(),
]


@pytest.mark.slow
def test_a_tenant_sending_malformed_texts_never_changes_another_tenants_answers(
    real_model, redis_url: str, redis_prefix: str, redis_store
) -> None:
    settings = small_settings(redis_url, redis_prefix, max_texts=8)
    probes = ["where is my card", "what is the rate for euros", "I want a refund", "my card is late"]
    support = [
        {"text": t, "label": label} for label, texts in (("card", CARDS), ("fx", FX), ("refund", REFUND)) for t in texts
    ]
    with serve_in_thread(create_app(settings, model=real_model), settings) as base:
        with httpx.Client(base_url=base, timeout=60) as http:
            for tenant in ("victim", "hostile"):
                assert http.post("/adapt", json={"tenant_id": tenant, "examples": support}).status_code == 200
            alone = http.post("/predict", json={"tenant_id": "victim", "texts": probes, "top_k": 3}).json()

        victim_done = threading.Event()
        victim_answers: list[tuple[int, str]] = []
        hostile_statuses: list[int] = []

        def victim(requests: int) -> None:
            with httpx.Client(base_url=base, timeout=60) as http:
                for _ in range(requests):
                    response = http.post("/predict", json={"tenant_id": "victim", "texts": probes, "top_k": 3})
                    victim_answers.append((response.status_code, response.text))

        def hostile() -> None:
            with httpx.Client(base_url=base, timeout=60) as http:
                i = 0
                while not victim_done.is_set():
                    path = "/adapt" if b'"examples"' in MALFORMED[i % len(MALFORMED)] else "/predict"
                    response = http.post(
                        path, content=MALFORMED[i % len(MALFORMED)], headers={"content-type": "application/json"}
                    )
                    hostile_statuses.append(response.status_code)
                    i += 1

        attackers = [threading.Thread(target=hostile) for _ in range(3)]
        victims = [threading.Thread(target=victim, args=(25,)) for _ in range(3)]
        for thread in attackers + victims:
            thread.start()
        for thread in victims:
            thread.join(timeout=300)
        victim_done.set()
        for thread in attackers:
            thread.join(timeout=60)

    assert len(victim_answers) == 75
    failures = [answer for answer in victim_answers if answer[0] != 200]
    assert not failures, failures[:3]
    for _, text in victim_answers:
        answer = json.loads(text)
        assert answer["version"] == alone["version"]
        for got, want in zip(answer["predictions"], alone["predictions"], strict=True):
            assert [item["label"] for item in got["top_k"]] == [item["label"] for item in want["top_k"]]
            for item, expected in zip(got["top_k"], want["top_k"], strict=True):
                assert item["score"] == pytest.approx(expected["score"], abs=1e-4)
    assert hostile_statuses and set(hostile_statuses) == {422}
