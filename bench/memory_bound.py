"""Peak memory of a maximum-size /adapt and /predict (the request limits in settings), in one process.

    .venv/bin/python -m bench.memory_bound                       # default limits (FEWSHOT_* env vars apply)
    .venv/bin/python -m bench.memory_bound --max-examples 256    # override a limit

Runs the app in-process (real encoder, in-process store), warms it up with a small request, then samples the
process RSS every 2 ms while one request of the largest allowed size runs: every example/text at
`max_text_chars` characters, `max_labels` labels of `max_label_chars` characters. Prints and writes JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.config import Settings
from app.services.runtime import load_model
from app.web.app import create_app

PAGE = os.sysconf("SC_PAGE_SIZE")
WORDS = [
    "card",
    "refund",
    "transfer",
    "balance",
    "account",
    "exchange",
    "rate",
    "pending",
    "payment",
    "atm",
    "cash",
    "top",
    "up",
    "pin",
]


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
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


def measure(settings: Settings, model: Any) -> dict[str, Any]:
    """RSS before and peak during a maximum /adapt and a maximum /predict, after a small warm-up."""
    adapt_body, predict_body = max_bodies(settings)
    small = {"tenant_id": "warm", "examples": [{"text": "a b", "label": "a"}, {"text": "c d", "label": "b"}]}
    result: dict[str, Any] = {
        "limits": {
            k: getattr(settings, k)
            for k in ("max_examples", "max_labels", "max_texts", "max_text_chars", "max_label_chars", "max_tokens")
        },
        "adapt_body_bytes": len(json.dumps(adapt_body)),
        "predict_body_bytes": len(json.dumps(predict_body)),
    }
    with TestClient(create_app(settings, model=model)) as client:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("max_examples", "max_labels", "max_texts", "max_text_chars", "max_label_chars"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/memory_bound.json"))
    args = parser.parse_args()
    overrides = {k: v for k, v in vars(args).items() if k.startswith("max_") and v is not None}
    settings = Settings(store="memory", log_level="warning", **overrides)
    model = load_model(settings)
    result = measure(settings, model)
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
