"""`PredictionService.predict_async`, the event-loop path of /predict: the same answers as `predict`, awaiting the
micro-batcher without a worker thread (so concurrent one-text requests share one pass even with a single worker
thread), option errors before any encoder work, and the worker-thread path for a store that does I/O."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from anyio import to_thread

from app.ml.batching import MicroBatcher
from app.ml.embedder import EncoderEmbedder, RoutedEmbedder
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.errors import ServiceError
from app.services.model_cache import HeadCache
from app.services.prediction import PredictionService
from app.services.validation import Limits
from app.store import MemoryStore, TenantStore
from tests.services.test_validation import SUPPORT

QUERIES = ["where is my new card", "I want my money back", "my card was declined", "hello there"]


def _services(encoder: SentenceEncoder, store: TenantStore, batcher: MicroBatcher) -> PredictionService:
    direct = EncoderEmbedder(encoder)
    context = TierContext(direct, InnerLoopParams.constant(5, 0.05, 10.0), Limits(max_examples=20))
    adaptation = AdaptationService(context, store)
    adaptation.adapt("acme", SUPPORT)
    routed = RoutedEmbedder(batcher.embed, direct)  # predictions go through the batcher, adaptation does not
    batched = replace(context, embedder=routed, embed_async=batcher.embed_async)
    return PredictionService(batched, store, HeadCache(8), adaptation)


def _labels(result) -> list[tuple[str | None, list[tuple[str, float]]]]:
    return [(p.label, [(label, round(score, 5)) for label, score in p.top_k]) for p in result.predictions]


def test_concurrent_awaits_share_one_pass_with_a_single_worker_thread(tiny_encoder: SentenceEncoder) -> None:
    sizes: list[int] = []
    # a pass starts only once 4 texts wait (or after 10 s): requests that each held a worker thread while
    # waiting could never be 4 at once with one thread
    batcher = MicroBatcher(tiny_encoder.embed, max_batch_texts=len(QUERIES), max_wait_ms=10_000, on_batch=sizes.append)
    try:
        service = _services(tiny_encoder, MemoryStore(), batcher)
        whole = service.predict("acme", QUERIES, top_k=3)  # also puts the head in the cache
        sizes.clear()

        async def one_text_each():
            to_thread.current_default_thread_limiter().total_tokens = 1
            calls = (service.predict_async("acme", [text], top_k=3) for text in QUERIES)
            return await asyncio.wait_for(asyncio.gather(*calls), 30)

        results = asyncio.run(one_text_each())
    finally:
        batcher.close()
    assert sizes == [len(QUERIES)]
    assert [_labels(r)[0] for r in results] == _labels(whole)
    assert all(r.version == whole.version for r in results)


def test_a_bad_option_fails_before_any_encoder_work(tiny_encoder: SentenceEncoder) -> None:
    batcher = MicroBatcher(tiny_encoder.embed, max_wait_ms=0)
    try:
        service = _services(tiny_encoder, MemoryStore(), batcher)
        with pytest.raises(ServiceError) as error:
            asyncio.run(service.predict_async("acme", ["hi"], label_threshold=0.5))
        with pytest.raises(ServiceError) as unknown:
            asyncio.run(service.predict_async("nobody", ["hi"]))
    finally:
        batcher.close()
    assert error.value.code == "invalid_option" and unknown.value.code == "unknown_tenant"
    assert batcher.texts == 0


def test_a_store_with_io_is_read_in_a_worker_thread_with_the_same_answers(
    tiny_encoder: SentenceEncoder, redis_store: TenantStore
) -> None:
    assert not redis_store.in_process and MemoryStore.in_process
    batcher = MicroBatcher(tiny_encoder.embed, max_wait_ms=0)
    try:
        service = _services(tiny_encoder, redis_store, batcher)
        cold = asyncio.run(service.predict_async("acme", QUERIES, top_k=2))  # cache miss: read and decode
        warm = asyncio.run(service.predict_async("acme", QUERIES, top_k=2))
        pinned = asyncio.run(service.predict_async("acme", QUERIES, top_k=2, version=cold.version))
        sync = service.predict("acme", QUERIES, top_k=2)
    finally:
        batcher.close()
    assert _labels(cold) == _labels(warm) == _labels(pinned) == _labels(sync)
