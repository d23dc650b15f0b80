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


def _computed(tier: Tier, tenant_id: str) -> int:
    """How many of TEXTS `tier`'s embedding cache has to compute for `tenant_id` (0: it holds them all)."""
    cache = tier.adaptation.embeddings
    return cache.embed(TEXTS, tier.adaptation.embedder.embed, scope=tenant_id)[1]


def test_a_deleted_tenants_texts_are_embedded_again_under_its_id(runtime: Runtime) -> None:
    first = runtime.tiers.for_adapt("t", "replace", None).adaptation.adapt("t", SUPPORT)
    assert first.n_embedded == len(TEXTS)
    runtime.tenants.delete("t")
    again = runtime.tiers.for_adapt("t", "replace", None).adaptation.adapt("t", SUPPORT)
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

    runtime.tenants.delete("t")

    assert (_computed(minilm, "t"), _computed(mpnet, "t")) == (len(TEXTS), len(TEXTS))
    assert _computed(minilm, "u") == 0  # forgetting is per tenant
    assert mpnet.insight.reports.get("t", version, fingerprint) is None
    assert runtime.cache.get("t", version) is None
    assert "t" not in runtime.tiers._names
