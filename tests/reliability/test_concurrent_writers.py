"""50 concurrent /adapt calls for one tenant, interleaved with /predict, over real HTTP (uvicorn + Redis).

Each writer posts a different support set: its own label names and its own label-to-topic assignment, so a
prediction that mixed one version's labels with another version's weights would name the wrong label and
carry the wrong probabilities. Every prediction is checked against the head re-fitted locally from the
support set of the version it reports.
"""

from __future__ import annotations

import itertools
import threading

import httpx
import pytest
import torch

from app.ml.encoder import SentenceEncoder
from app.services.adaptation import AdaptationService
from app.services.validation import validate_support
from app.web.app import create_app
from tests.reliability.conftest import serve_in_thread, small_settings
from tests.web.conftest import CARDS, FX, REFUND

WRITERS = 50
READERS = 4
STEPS = 3
TENANT = "contended"
TOPICS = (CARDS, FX, REFUND)
PROBES = ["my card still has not arrived", "give me my money back"]
PERMUTATIONS = list(itertools.permutations(range(3)))


def support_for(writer: int) -> list[dict[str, str]]:
    """Writer `w`: labels `w<w>-<k>`, topics assigned by a permutation, 2 or 3 examples per label."""
    order = PERMUTATIONS[writer % len(PERMUTATIONS)]
    shots = 2 + writer % 2
    return [
        {"text": text, "label": f"w{writer}-{k}"} for k, topic in enumerate(order) for text in TOPICS[topic][:shots]
    ]


@pytest.mark.slow
def test_concurrent_writers_never_mix_versions(real_model, redis_url: str, redis_prefix: str, redis_store) -> None:
    settings = small_settings(redis_url, redis_prefix, max_examples=12)
    acknowledged: dict[int, int] = {}  # version -> writer
    observed: list[list[tuple[int, list[tuple[str, float]]]]] = [[] for _ in range(READERS)]
    errors: list[str] = []
    writers_done = threading.Event()
    start = threading.Barrier(WRITERS + READERS)

    app = create_app(settings, model=real_model)
    with serve_in_thread(app, settings) as base:
        with httpx.Client(base_url=base, timeout=60) as http:
            seeded = http.post("/adapt", json={"tenant_id": TENANT, "examples": support_for(0), "inner_steps": STEPS})
            assert seeded.status_code == 200
            acknowledged[seeded.json()["version"]] = 0

        def writer(w: int) -> None:
            with httpx.Client(base_url=base, timeout=120) as http:
                start.wait()
                body = {"tenant_id": TENANT, "examples": support_for(w), "inner_steps": STEPS}
                response = http.post("/adapt", json=body)
                if response.status_code != 200:
                    errors.append(f"adapt {w}: {response.status_code} {response.text}")
                    return
                version = response.json()["version"]
                if version in acknowledged:
                    errors.append(f"version {version} acknowledged twice")
                acknowledged[version] = w

        def reader(r: int) -> None:
            with httpx.Client(base_url=base, timeout=120) as http:
                start.wait()
                while not writers_done.is_set():
                    response = http.post("/predict", json={"tenant_id": TENANT, "texts": PROBES, "top_k": 3})
                    if response.status_code != 200:
                        errors.append(f"predict: {response.status_code} {response.text}")
                        return
                    body = response.json()
                    for prediction in body["predictions"]:
                        ranked = [(item["label"], item["score"]) for item in prediction["top_k"]]
                        observed[r].append((body["version"], ranked))

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(1, WRITERS + 1)]
        readers = [threading.Thread(target=reader, args=(r,)) for r in range(READERS)]
        for thread in threads + readers:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        writers_done.set()
        for thread in readers:
            thread.join(timeout=60)
        assert not errors, errors[:5]

        # versions: unique (checked above), one per acknowledged write, strictly increasing, no gaps
        versions = sorted(acknowledged)
        assert len(versions) == WRITERS + 1
        assert versions == list(range(versions[0], versions[0] + WRITERS + 1))

        # the final stored model is the one with the highest acknowledged version, complete
        final_version, final_writer = versions[-1], acknowledged[versions[-1]]
        with httpx.Client(base_url=base, timeout=60) as http:
            described = http.get(f"/tenants/{TENANT}").json()
            final = http.post("/predict", json={"tenant_id": TENANT, "texts": PROBES, "top_k": 3}).json()
        assert described["version"] == final_version and described["status"] == "ready"
        assert described["labels"] == [f"w{final_writer}-{k}" for k in range(3)]
        assert final["version"] == final_version
        stored_support = redis_store.load_support(TENANT)
        assert stored_support == support_for(final_writer)
        seen_versions = {version for seen in observed for version, _ in seen}
        expected = _refit(app.state.runtime.tiers.default.adaptation, real_model[0], seen_versions, acknowledged)

    # every prediction came from exactly one complete acknowledged version
    assert sum(len(seen) for seen in observed) >= len(PROBES) * READERS, "readers made no predictions"
    for seen in observed:
        reader_versions = [version for version, _ in seen]
        assert reader_versions == sorted(reader_versions), "a reader saw an older version after a newer one"
        for i, (version, ranked) in enumerate(seen):
            labels, probabilities = expected[version]
            assert {label for label, _ in ranked} == set(labels), f"v{version} answered with labels {ranked}"
            row = probabilities[i % len(PROBES)]
            for label, score in ranked:
                assert score == pytest.approx(row[labels.index(label)], abs=1e-3), (version, label)


def _refit(
    service: AdaptationService, encoder: SentenceEncoder, versions: set[int], acknowledged: dict[int, int]
) -> dict[int, tuple[list[str], list[list[float]]]]:
    """Labels and probe probabilities of each version's head, re-fitted from its writer's support set."""
    probes = encoder.embed(PROBES)
    expected = {}
    for version in versions:
        support = validate_support(support_for(acknowledged[version]), None, service.context.limits)
        head = service.fit(support, STEPS)[0]
        with torch.no_grad():
            expected[version] = (head.labels, head.probabilities(probes).tolist())
    # writers with different label-to-topic assignments really disagree on the probes (mixing would show)
    rows = {tuple(round(p, 3) for row in probs for p in row) for _, probs in expected.values()}
    assert len(rows) == len({acknowledged[version] % len(PERMUTATIONS) for version in versions})
    return expected
