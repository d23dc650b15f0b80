"""The adapt path's label names (tiny encoder, in-memory store): a rebuild replays the stored decision, the names
join the fit, not the stored support set, and the report cross-validates with them as the head was fitted."""

from __future__ import annotations

import torch

from app.ml.embedder import EncoderEmbedder
from app.ml.encoder import SentenceEncoder
from app.ml.head import TenantHead
from app.ml.learner import InnerLoopParams
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.insight import InsightService, ReportCache
from app.services.model_cache import HeadCache
from app.services.prediction import PredictionService
from app.store import MemoryStore

ONE_SHOT = [
    {"text": "my new card still has not come", "label": "card_arrival"},
    {"text": "what rate do you give for dollars", "label": "exchange_rate"},
]


def _service(tiny_encoder: SentenceEncoder) -> tuple[AdaptationService, MemoryStore]:
    store = MemoryStore()
    context = TierContext(EncoderEmbedder(tiny_encoder), InnerLoopParams.constant(2, 0.04, 10.0))
    return AdaptationService(context, store), store


def test_a_rebuild_replays_the_stored_decision(tiny_encoder: SentenceEncoder) -> None:
    service, store = _service(tiny_encoder)
    first = service.adapt("acme", ONE_SHOT)
    assert first.label_names is not None and first.label_names.used
    rebuilt = service.rebuild("acme", first.version, None)
    assert rebuilt is not None
    version, head = rebuilt
    stored = store.load("acme", version=version)
    assert stored is not None and stored.meta["label_names"] == {"mode": "auto", "used": True}
    original = store.load("acme", version=first.version)
    assert original is not None
    queries = service.context.embedder.embed(["where is my card", "dollar rate"])
    same = TenantHead.from_bytes(original.head).probabilities(queries)
    torch.testing.assert_close(head.probabilities(queries), same)  # the same fit inputs: names included


def test_names_change_the_head_but_not_the_stored_support(tiny_encoder: SentenceEncoder) -> None:
    service, store = _service(tiny_encoder)
    named = service.adapt("acme", ONE_SHOT, label_names="on")
    named_head, named_rows = store.load("acme"), store.load_support("acme")
    plain = service.adapt("acme", ONE_SHOT, label_names="off")
    plain_head, plain_rows = store.load("acme"), store.load_support("acme")
    assert named.label_names is not None and named.label_names.used and named.n_descriptions == 0
    assert plain.label_names is not None and not plain.label_names.used
    assert named_rows == plain_rows == ONE_SHOT
    assert named_head is not None and plain_head is not None
    queries = service.context.embedder.embed(["where is my card"])
    named_p = TenantHead.from_bytes(named_head.head).probabilities(queries)
    assert not torch.allclose(named_p, TenantHead.from_bytes(plain_head.head).probabilities(queries))


def test_the_report_cross_validates_the_head_as_it_was_fitted_with_its_names(tiny_encoder: SentenceEncoder) -> None:
    service, store = _service(tiny_encoder)
    examples = [
        {"text": text, "label": label}
        for label, texts in {
            "card_arrival": ["my card has not come", "card still not here", "when does the card arrive"],
            "exchange_rate": ["dollar to euro rate", "what rate for pounds", "exchange rate today"],
        }.items()
        for text in texts
    ]
    reports = {}
    for mode in ("on", "off"):
        service.adapt(mode, examples, label_names=mode)
        prediction = PredictionService(service.context, store, HeadCache(10), service)
        insight = InsightService(service.context, store, prediction, ReportCache(10))
        reports[mode] = insight.evaluate(mode).report
    assert reports["on"].ece != reports["off"].ece  # the names are trained on in every fold, as in the head
