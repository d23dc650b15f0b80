"""`explain: k` on PredictionService (real Redis store, tiny encoder): per text, the k support examples of the
predicted label nearest to it, then the k of the runner-up, by cosine similarity; the same as a brute-force
reference; out of scope, the top-scoring label's; multi-label, each applying label's; only the tenant's own
examples; a support matrix cached per tenant version and forgotten on DELETE."""

from __future__ import annotations

import asyncio

import pytest
import torch

from app.bootstrap import build_runtime
from app.config import Settings
from app.ml.embedder import EncoderEmbedder
from app.ml.embedding_cache import EmbeddingLRU
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.errors import ServiceError
from app.services.evidence import SupportMatrices
from app.services.model_cache import HeadCache
from app.services.prediction import PredictionService
from app.services.tenants import TenantService
from app.services.validation import Limits
from app.store import RedisStore
from tests.services.test_multilabel_service import TICKETS
from tests.services.test_validation import SUPPORT

QUERIES = ["where is my new card", "I want my money back", "dollar to euro rate"]
OTHER = [{"text": f"secret {label} text {i}", "label": label} for label in ("alpha", "beta") for i in range(3)]


@pytest.fixture
def service(tiny_encoder: SentenceEncoder, redis_store: RedisStore) -> PredictionService:
    context = TierContext(
        EncoderEmbedder(tiny_encoder),
        InnerLoopParams.constant(2, 0.05, 10.0),
        Limits(max_examples=30),
        embeddings=EmbeddingLRU(1000),
    )
    adaptation = AdaptationService(context, redis_store)
    adaptation.adapt("acme", SUPPORT, label_descriptions={"refund": "money back for a purchase"})
    adaptation.adapt("other", OTHER)
    return PredictionService(context, redis_store, HeadCache(8), adaptation)


def _reference(service: PredictionService, text: str, label: str, k: int) -> list[tuple[str, str]]:
    """Brute force: the label's examples sorted by cosine similarity to `text`."""
    examples = [e["text"] for e in SUPPORT if e["label"] == label]
    embed = service.context.embedder.embed
    sims = torch.nn.functional.cosine_similarity(embed([text]), embed(examples)).tolist()
    ranked = sorted(zip(sims, examples, strict=True), key=lambda pair: -pair[0])
    return [(label, t) for _, t in ranked[:k]]


def test_evidence_is_the_nearest_examples_of_the_predicted_label_then_the_runner_up(
    service: PredictionService,
) -> None:
    result = service.predict("acme", QUERIES, top_k=3, explain=2)
    for text, prediction in zip(QUERIES, result.predictions, strict=True):
        first, second = prediction.top_k[0][0], prediction.top_k[1][0]
        assert prediction.evidence is not None
        found = [(e.label, e.text) for e in prediction.evidence]
        assert found == _reference(service, text, first, 2) + _reference(service, text, second, 2)
        sims = [e.similarity for e in prediction.evidence]
        assert sims[0] >= sims[1] and sims[2] >= sims[3] and all(-1.0 <= s <= 1.0 for s in sims)
        assert "money back for a purchase" not in [e.text for e in prediction.evidence]  # descriptions are no evidence


def test_k_beyond_a_labels_examples_returns_what_it_has_and_no_explain_returns_none(
    service: PredictionService,
) -> None:
    explained = service.predict("acme", QUERIES[:1], explain=10).predictions[0]
    assert explained.evidence is not None and len(explained.evidence) == 6  # 3 examples per label
    assert service.predict("acme", QUERIES[:1]).predictions[0].evidence is None


def test_out_of_scope_texts_get_the_top_scoring_labels_evidence(service: PredictionService) -> None:
    prediction = service.predict("acme", ["quantum chromodynamics"], top_k=2, oos_threshold=1.0, explain=1)
    only = prediction.predictions[0]
    assert only.label is None and only.out_of_scope
    assert only.evidence is not None
    assert [e.label for e in only.evidence] == [only.top_k[0][0], only.top_k[1][0]]


def test_a_tenant_only_ever_sees_its_own_examples(service: PredictionService) -> None:
    own = {e["text"] for e in SUPPORT}
    for tenant, texts in (("acme", own), ("other", {e["text"] for e in OTHER})):
        result = service.predict(tenant, QUERIES, explain=10)
        shown = {e.text for p in result.predictions for e in p.evidence or []}
        assert shown and shown <= texts


def test_the_async_path_gives_the_same_evidence(service: PredictionService) -> None:
    sync = service.predict("acme", QUERIES, explain=3)
    result = asyncio.run(service.predict_async("acme", QUERIES, explain=3))
    assert [p.evidence for p in result.predictions] == [p.evidence for p in sync.predictions]


def test_multi_label_evidence_is_per_applying_label(service: PredictionService) -> None:
    service.adaptation.adapt("multi", TICKETS, task="multi_label")
    for threshold in (0.01, 0.99):
        for prediction in service.predict(
            "multi", ["charged and crashed"], label_threshold=threshold, explain=2
        ).predictions:
            applying = [label for label, _ in prediction.labels or []] or [prediction.top_k[0][0]]
            assert prediction.evidence is not None
            labels = list(dict.fromkeys(e.label for e in prediction.evidence))
            assert labels == applying
            for e in prediction.evidence:
                assert e.label in next(t["labels"] for t in TICKETS if t["text"] == e.text)


@pytest.mark.parametrize("explain", [-1, 11])
def test_explain_outside_0_to_10_is_refused(service: PredictionService, explain: int) -> None:
    with pytest.raises(ServiceError) as error:
        service.predict("acme", QUERIES, explain=explain)
    assert (error.value.status, error.value.code) == (422, "invalid_explain")


def test_the_support_matrix_is_cached_per_version_and_forgotten_on_delete(
    service: PredictionService, redis_store: RedisStore
) -> None:
    matrices: SupportMatrices = service.evidence
    fingerprint = service.context.embedder.fingerprint
    service.predict("acme", QUERIES, explain=1)
    service.predict("other", QUERIES, explain=1)
    assert matrices.get("acme", 1, fingerprint) is not None and len(matrices) == 2
    service.adaptation.adapt("acme", [{"text": "card still missing", "label": "card_arrival"}], mode="append")
    service.predict("acme", ["card still missing"], explain=3)
    current = matrices.get("acme", 2, fingerprint)
    assert current is not None and "card still missing" in current.texts  # the new version's own matrix
    tenants = TenantService(redis_store, service.cache, {}, forget=[matrices.forget])
    tenants.delete("acme")
    assert matrices.get("acme", 1, fingerprint) is None and matrices.get("acme", 2, fingerprint) is None
    assert matrices.get("other", 1, fingerprint) is not None


def test_a_runtimes_delete_forgets_the_tenants_support_matrices(
    tiny_encoder: SentenceEncoder, redis_url: str, redis_prefix: str, redis_store: RedisStore
) -> None:
    settings = Settings(
        store="redis", redis_url=redis_url, redis_prefix=redis_prefix, checkpoint="none", _env_file=None
    )
    runtime = build_runtime(settings, (tiny_encoder, InnerLoopParams.constant(2, 0.04, 10.0), None))
    try:
        tier = runtime.tiers.default
        for tenant in ("t", "u"):
            tier.adaptation.adapt(tenant, SUPPORT)
            tier.prediction.predict(tenant, QUERIES, explain=2)
        assert len(tier.prediction.evidence) == 2
        runtime.tenants.delete("t")
        fingerprint = tier.description.fingerprint
        assert tier.prediction.evidence.get("t", 1, fingerprint) is None
        assert tier.prediction.evidence.get("u", 1, fingerprint) is not None
    finally:
        runtime.close()
