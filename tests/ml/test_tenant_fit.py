"""The tenant-fitting core and the embedders the services hand it: one fingerprint, cached texts reused."""

from __future__ import annotations

import torch

from app.ml.batching import MicroBatcher
from app.ml.embedder import EncoderEmbedder, RoutedEmbedder
from app.ml.embedding_cache import EmbeddingLRU
from app.ml.encoder import quantize_int8
from app.ml.learner import InnerLoopParams
from app.ml.tenant_fit import OosRule, SupportSet, fit_tenant
from tests.tiny_encoder import build_tiny_encoder, packaged_tokenizer

SUPPORT = SupportSet(
    texts=["card lost", "card stolen", "rate today", "rate euro", "rate dollar"],
    labels=["card", "rate"],
    targets=[0, 0, 1, 1, 1],
    descriptions={"card": "problems with a bank card"},
)
INNER = InnerLoopParams.constant(5, 0.5, 10.0)


def test_embedders_keep_the_encoders_fingerprint_and_values(tiny_encoder) -> None:
    direct = EncoderEmbedder(tiny_encoder, batch_size=2)
    batcher = MicroBatcher(direct.embed)
    try:
        routed = RoutedEmbedder(batcher.embed, direct)
        assert direct.fingerprint == routed.fingerprint == tiny_encoder.fingerprint
        torch.testing.assert_close(routed.embed(SUPPORT.texts), tiny_encoder.embed(SUPPORT.texts))
    finally:
        batcher.close()


def test_fingerprint_is_read_live() -> None:
    encoder = build_tiny_encoder(packaged_tokenizer())
    embedder = EncoderEmbedder(encoder)
    before = embedder.fingerprint
    quantize_int8(encoder)
    assert embedder.fingerprint == encoder.fingerprint != before


def test_fit_reuses_cached_texts_within_a_scope(tiny_encoder) -> None:
    embedder, cache = EncoderEmbedder(tiny_encoder), EmbeddingLRU(100)
    first = fit_tenant(SUPPORT, embedder, INNER, OosRule(), cache=cache, scope="acme")
    again = fit_tenant(SUPPORT, embedder, INNER, OosRule(), cache=cache, scope="acme")
    other = fit_tenant(SUPPORT, embedder, INNER, OosRule(), cache=cache, scope="globex")
    uncached = fit_tenant(SUPPORT, embedder, INNER, OosRule())
    assert (first.n_embedded, again.n_embedded, other.n_embedded, uncached.n_embedded) == (6, 0, 6, 6)
    assert set(first.timings_ms) == {"embed", "inner_loop"}
    queries = tiny_encoder.embed(["my card", "euro rate"])
    for fitted in (again, other, uncached):
        torch.testing.assert_close(fitted.head.probabilities(queries), first.head.probabilities(queries))
        assert fitted.head.oos_threshold == first.head.oos_threshold
    assert first.head.labels == ["card", "rate"]
