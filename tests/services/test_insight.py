"""InsightService on the memory store and the tiny encoder: report caching per version, invalidation when the
tenant changes (adapt, rollback, delete), a bounded per-tenant cache, and the services' validation codes."""

from __future__ import annotations

import pytest

from app.ml.embedder import EncoderEmbedder
from app.ml.embedding_cache import EmbeddingLRU
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams
from app.ml.work import Priority, Work, WorkCancelled, working_for
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.errors import ServiceError
from app.services.insight import InsightService, ReportCache
from app.services.model_cache import HeadCache
from app.services.prediction import PredictionService
from app.services.validation import Limits
from app.store import MemoryStore
from tests.services.test_validation import SUPPORT


@pytest.fixture
def services(tiny_encoder: SentenceEncoder) -> tuple[AdaptationService, InsightService, MemoryStore]:
    store = MemoryStore()
    inner = InnerLoopParams.constant(5, 0.05, 10.0)
    limits = Limits(max_examples=20)
    context = TierContext(EncoderEmbedder(tiny_encoder), inner, limits, embeddings=EmbeddingLRU(1000))
    adaptation = AdaptationService(context, store)
    prediction = PredictionService(context, store, HeadCache(8), adaptation)
    return adaptation, InsightService(context, store, prediction, ReportCache(2), max_pool=10), store


def test_a_report_is_cached_per_version_until_the_tenant_changes(services) -> None:
    adaptation, insight, store = services
    adaptation.adapt("acme", SUPPORT)
    first = insight.evaluate("acme")
    assert not first.cached and first.version == 1 and first.report.n_evaluated == 9
    again = insight.evaluate("acme")
    assert again.cached and again.report is first.report

    adaptation.adapt("acme", [{"text": "money back please", "label": "refund"}], mode="append")
    second = insight.evaluate("acme")
    assert not second.cached and second.version == 2 and second.report.n_evaluated == 10
    assert insight.evaluate("acme", version=1).cached  # a retained version never changes

    assert store.rollback("acme", 1) == 3
    rolled = insight.evaluate("acme")
    assert not rolled.cached and rolled.version == 3 and rolled.report.n_evaluated == 9

    store.delete("acme")
    with pytest.raises(ServiceError) as gone:
        insight.evaluate("acme")
    assert gone.value.code == "unknown_tenant"


def test_the_report_cache_is_bounded_per_tenant_and_in_tenants() -> None:
    versions = 5
    cache = ReportCache(2, versions)
    for version in range(1, versions + 3):
        cache.put("a", version, "f", {"v": version})
    assert len(cache) == versions and cache.get("a", 2, "f") is None
    assert cache.get("a", versions + 2, "f") == {"v": versions + 2}
    assert cache.get("a", versions + 2, "other-encoder") is None
    cache.put("b", 1, "f", {})
    cache.put("c", 1, "f", {})
    assert cache.get("a", versions + 2, "f") is None  # least recently used tenant evicted
    assert cache.get("b", 1, "f") == {} and cache.get("c", 1, "f") == {}
    assert len(ReportCache(0)) == 0


def test_suggest_and_evaluate_validation_codes(services) -> None:
    adaptation, insight, _ = services
    adaptation.adapt("acme", SUPPORT)
    cases = [
        (lambda: insight.suggest("acme", [], 1), "no_texts"),
        (lambda: insight.suggest("acme", ["a"] * 11, 1), "too_many_texts"),
        (lambda: insight.suggest("acme", ["a"], 0), "invalid_k"),
        (lambda: insight.suggest("nobody", ["a"], 1), "unknown_tenant"),
        (lambda: insight.evaluate("acme", examples=[]), "no_examples"),
        (lambda: insight.evaluate("acme", examples=[{"text": "x", "label": "nope"}]), "unknown_label"),
        (lambda: insight.evaluate("acme", version=7), "unknown_version"),
    ]
    for call, code in cases:
        with pytest.raises(ServiceError) as refused:
            call()
        assert refused.value.code == code
    picks = insight.suggest("acme", ["a new text", "another one", "a new text"], 5)
    assert picks.pool_size == 2 and len(picks.suggestions) == 2


def test_every_retained_version_stays_cached(services) -> None:
    adaptation, insight, store = services
    for i in range(5):  # the store retains 5 versions
        adaptation.adapt("acme", [*SUPPORT, {"text": f"another refund request {i}", "label": "refund"}][-20:])
    retained = [v.version for v in store.versions("acme")]
    assert len(retained) == 5
    first = [insight.evaluate("acme", version=v).cached for v in retained]
    again = [insight.evaluate("acme", version=v).cached for v in retained]
    assert first == [False] * 5 and again == [True] * 5


def test_a_report_whose_client_left_stops_at_its_next_fit(services, monkeypatch) -> None:
    import app.ml.tenant_report as tenant_report

    adaptation, insight, _ = services
    adaptation.adapt("acme", SUPPORT)
    work, fits = Work("acme", Priority.BULK), []
    fit = tenant_report.fit_embedded

    def fit_then_leave(*args, **kwargs):
        fits.append(1)
        work.cancel()  # the client disconnects during the first fold
        return fit(*args, **kwargs)

    monkeypatch.setattr(tenant_report, "fit_embedded", fit_then_leave)
    with working_for(work), pytest.raises(WorkCancelled):
        insight.evaluate("acme")
    assert len(fits) == 1
    assert not insight.reports.get("acme", 1, adaptation.context.embedder.fingerprint)  # nothing half-done was cached
