"""One `TierContext` per tier: built once by `app.bootstrap.build_tier` and shared by the tier's services."""

from __future__ import annotations

import pytest

from app.bootstrap import build_runtime
from app.config import Settings
from app.ml.embedder import EncoderEmbedder
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams
from app.services.context import TierContext
from app.services.errors import ServiceError


def test_the_services_of_a_tier_share_one_context_and_tiers_do_not(tiny_encoder: SentenceEncoder) -> None:
    settings = Settings(
        store="memory", checkpoint="none", encoders="minilm,mpnet", batching_enabled=False, _env_file=None
    )
    tiny = (tiny_encoder, InnerLoopParams.constant(2, 0.04, 10.0), None)
    runtime = build_runtime(settings, tiny, tier_models={"mpnet": tiny})
    try:
        first, second = (runtime.tiers.named(name) for name in ("minilm", "mpnet"))
        for tier in (first, second):
            assert tier.adaptation.context is tier.prediction.context is tier.insight.context
            assert tier.adaptation.context.encoder_name == tier.name
        assert first.adaptation.context.embeddings is not second.adaptation.context.embeddings
    finally:
        runtime.close()


def test_the_inner_loop_follows_the_task_and_the_encoder_check_the_record(tiny_encoder: SentenceEncoder) -> None:
    single, multi = InnerLoopParams.constant(2, 0.04, 10.0), InnerLoopParams.constant(3, 0.04, 10.0)
    context = TierContext(EncoderEmbedder(tiny_encoder), single, multi_inner=multi, encoder_name="minilm")
    assert context.inner_for("single_label") is single and context.inner_for("multi_label") is multi
    assert TierContext(context.embedder, single).inner_for("multi_label") is single
    context.require_own_encoder("acme", {})  # records without an encoder name are MiniLM's
    with pytest.raises(ServiceError) as refused:
        context.require_own_encoder("acme", {"encoder": "mpnet"})
    assert (refused.value.status, refused.value.code) == (409, "encoder_not_served")
