"""DELETE forgets the tenant in every cache of the process (support embeddings of every tier, reports, decoded
heads, the tier routing memory), so whoever later holds its id learns nothing of the deleted data.

Two tiers on the tiny encoder and the memory store, built through `app.bootstrap` like a server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.bootstrap import Runtime, build_runtime
from app.config import Settings
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams
from app.services.records import stored_generation
from app.services.tiers import Tier
from tests.services.test_validation import SUPPORT

TEXTS = [example["text"] for example in SUPPORT]


@pytest.fixture
def runtime(tiny_encoder: SentenceEncoder) -> Iterator[Runtime]:
    settings = Settings(
        store="memory", checkpoint="none", encoders="minilm,mpnet", batching_enabled=False, _env_file=None
    )
    tiny = (tiny_encoder, InnerLoopParams.constant(2, 0.04, 10.0), None)
    runtime = build_runtime(settings, tiny, tier_models={"mpnet": tiny})
    yield runtime
    runtime.close()


def _computed(tier: Tier, tenant_id: str, generation: str) -> int:
    """How many of TEXTS `tier`'s embedding cache has to compute for `tenant_id` in `generation` (0: it holds them
    all)."""
    context = tier.adaptation.context
    return context.embeddings.embed(TEXTS, context.embedder.embed, tenant_id, generation)[1]


def _generation(runtime: Runtime, tenant_id: str) -> str:
    stored = runtime.store.load(tenant_id)
    assert stored is not None
    return stored_generation(stored.meta)


def test_a_deleted_tenants_texts_are_embedded_again_under_its_id(runtime: Runtime) -> None:
    first = runtime.tiers.for_adapt("t", "replace", None).adaptation.adapt("t", SUPPORT, label_names="off")
    assert first.n_embedded == len(TEXTS)
    runtime.tenants.delete("t")
    again = runtime.tiers.for_adapt("t", "replace", None).adaptation.adapt("t", SUPPORT, label_names="off")
    assert again.n_embedded == len(TEXTS)


def test_delete_leaves_nothing_of_the_tenant_in_any_cache(runtime: Runtime) -> None:
    minilm, mpnet = runtime.tiers.named("minilm"), runtime.tiers.named("mpnet")
    minilm.adaptation.adapt("t", SUPPORT)
    version = mpnet.adaptation.adapt("t", SUPPORT).version  # a replace onto the other tier: both hold its texts
    minilm.adaptation.adapt("u", SUPPORT)  # another tenant, with the same texts
    fingerprint = mpnet.description.fingerprint
    assert runtime.tiers.of_tenant("t") is mpnet and "t" in runtime.tiers._names
    mpnet.prediction.predict("t", ["my card never came"])
    mpnet.insight.evaluate("t")
    assert runtime.cache.get("t", version) is not None
    assert mpnet.insight.reports.get("t", version, fingerprint) is not None

    generations = {tenant: _generation(runtime, tenant) for tenant in ("t", "u")}
    runtime.tenants.delete("t")

    computed = (_computed(minilm, "t", generations["t"]), _computed(mpnet, "t", generations["t"]))
    assert computed == (len(TEXTS), len(TEXTS))
    assert _computed(minilm, "u", generations["u"]) == 0  # forgetting is per tenant
    assert mpnet.insight.reports.get("t", version, fingerprint) is None
    assert runtime.cache.get("t", version) is None
    assert "t" not in runtime.tiers._names


def test_a_replica_that_missed_the_delete_shares_nothing_with_the_next_holder_of_the_id(tiny_encoder) -> None:
    """Two replicas on one store: the tenant adapts on one, is deleted through the other, and is created again on
    the first. Its cached embeddings belong to the deleted life, so the new holder's texts are all embedded."""
    from app.ml.embedder import EncoderEmbedder
    from app.ml.embedding_cache import EmbeddingLRU
    from app.services.adaptation import AdaptationService
    from app.services.context import TierContext
    from app.store import MemoryStore

    store = MemoryStore()
    inner = InnerLoopParams.constant(2, 0.04, 10.0)
    replica = AdaptationService(TierContext(EncoderEmbedder(tiny_encoder), inner, embeddings=EmbeddingLRU(1000)), store)
    assert replica.adapt("t", SUPPORT, label_names="off").n_embedded == len(TEXTS)
    assert replica.adapt("t", SUPPORT, label_names="off").n_embedded == 0  # the same life: its cache serves a replace
    store.delete("t")  # through another replica: this one's caches are not told
    assert replica.adapt("t", SUPPORT, label_names="off").n_embedded == len(TEXTS)
