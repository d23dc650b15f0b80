"""Peak memory of a maximum-size /adapt and /predict against an app in this process (Linux /proc)."""

from __future__ import annotations

import gc
import json
import os
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi.testclient import TestClient

if TYPE_CHECKING:
    from app.config import Settings

PAGE = os.sysconf("SC_PAGE_SIZE")
WORDS = ["card", "refund", "transfer", "balance", "account", "exchange", "rate", "pending", "payment", "atm", "cash"]
WORDS += ["top", "up", "pin"]
LIMITS = ("max_examples", "max_labels", "max_texts", "max_text_chars", "max_label_chars", "max_tokens")


def rss_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def peak_rss_during(call: Callable[[], Any], interval_s: float = 0.002) -> tuple[Any, int]:
    """Run `call` while a thread samples RSS; return its result and the highest RSS seen."""
    peak = rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = call()
    finally:
        done.set()
        sampler.join()
    return result, max(peak, rss_bytes())


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS) + str(rng.randrange(1000)))
    return " ".join(words)[:chars].strip() or "x"


def max_bodies(settings: Settings, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """The largest /adapt and /predict bodies the settings accept."""
    rng = random.Random(seed)
    n_labels = min(settings.max_labels, settings.max_examples // 2)
    labels = [f"{i:04d}-" + "l" * max(0, settings.max_label_chars - 5) for i in range(n_labels)]
    labels = [label[: settings.max_label_chars] for label in labels]
    examples = [
        {"text": _text(rng, settings.max_text_chars), "label": labels[i % n_labels]}
        for i in range(settings.max_examples)
    ]
    adapt = {"tenant_id": "max-payload", "examples": examples}
    texts = [_text(rng, settings.max_text_chars) for _ in range(settings.max_texts)]
    predict = {"tenant_id": "max-payload", "texts": texts, "top_k": min(settings.max_top_k, n_labels)}
    return adapt, predict


def measure(app: Any, settings: Settings) -> dict[str, Any]:
    """RSS before and peak during a maximum /adapt and a maximum /predict to `app` (built from `settings`),
    after a small warm-up."""
    adapt_body, predict_body = max_bodies(settings)
    small = {"tenant_id": "warm", "examples": [{"text": "a b", "label": "a"}, {"text": "c d", "label": "b"}]}
    result: dict[str, Any] = {
        "limits": {name: getattr(settings, name) for name in LIMITS},
        "adapt_body_bytes": len(json.dumps(adapt_body)),
        "predict_body_bytes": len(json.dumps(predict_body)),
    }
    with TestClient(app) as client:
        assert client.post("/adapt", json=small).status_code == 200
        assert client.post("/predict", json={"tenant_id": "warm", "texts": ["a b"]}).status_code == 200
        for name, path, body in (("adapt", "/adapt", adapt_body), ("predict", "/predict", predict_body)):
            gc.collect()
            before = rss_bytes()
            started = time.perf_counter()
            response, peak = peak_rss_during(lambda path=path, body=body: client.post(path, json=body))
            assert response.status_code == 200, response.text
            result[name] = {
                "rss_before_mb": round(before / 2**20, 1),
                "rss_peak_mb": round(peak / 2**20, 1),
                "growth_mb": round((peak - before) / 2**20, 1),
                "seconds": round(time.perf_counter() - started, 2),
            }
    return result
