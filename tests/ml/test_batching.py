"""Micro-batching: merged passes give each caller exactly its own rows."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from app.ml.batching import MicroBatcher

TEXTS = [
    "where is my card",
    "a much longer sentence about exchange rates and fees charged on transfers abroad",
    "refund",
    "how do I top up my account with a bank transfer from another bank",
    "hi",
    "my pin is blocked",
]


def test_batched_results_equal_unbatched(tiny_encoder) -> None:
    def embed(texts: list[str]) -> torch.Tensor:
        return tiny_encoder.embed(texts, batch_size=64)

    requests = [TEXTS[i : i + 2] for i in range(0, len(TEXTS), 2)] + [TEXTS[::-1], [TEXTS[0]]]
    expected = [embed(r) for r in requests]
    batcher = MicroBatcher(embed, max_batch_texts=64, max_wait_ms=50)
    try:
        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            results = list(pool.map(batcher.embed, requests))
    finally:
        batcher.close()
    for got, want in zip(results, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert batcher.batches < len(requests)  # some requests shared a pass
    assert batcher.texts == sum(len(r) for r in requests)


def test_max_batch_texts_is_respected() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def embed(texts: list[str]) -> torch.Tensor:
        gate.wait(5)
        return torch.tensor([[float(len(t))] for t in texts])

    batcher = MicroBatcher(embed, max_batch_texts=4, max_wait_ms=20, on_batch=sizes.append)
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(batcher.embed, ["ab", "abc"]) for _ in range(6)]
            gate.set()
            results = [f.result(timeout=10) for f in futures]
    finally:
        batcher.close()
    assert all(r.squeeze(1).tolist() == [2.0, 3.0] for r in results)
    assert sizes and max(sizes) <= 4 and sum(sizes) == 12


def test_errors_reach_every_caller_and_the_batcher_survives() -> None:
    calls = {"n": 0}

    def embed(texts: list[str]) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("encoder failed")
        return torch.zeros(len(texts), 2)

    batcher = MicroBatcher(embed, max_wait_ms=1)
    try:
        with pytest.raises(ValueError, match="encoder failed"):
            batcher.embed(["x"])
        assert batcher.embed(["y", "z"]).shape == (2, 2)
    finally:
        batcher.close()
