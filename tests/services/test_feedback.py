"""FeedbackService on a real Redis store and the tiny encoder: corrections go through the append path as a new
version, stored with `source: feedback`; duplicates are ignored and counted, a relabelled text replaces its old
example, a new label is added, bad input and a stale `expected_version` are refused before anything is written,
and rows written before corrections existed read as `adapt`."""

from __future__ import annotations

import pytest

from app.ml.embedder import EncoderEmbedder
from app.ml.embedding_cache import EmbeddingLRU
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.errors import ServiceError
from app.services.feedback import Correction, FeedbackService
from app.services.records import ADAPT, FEEDBACK, corrections_per_label, example_source, with_sources
from app.services.validation import Limits
from app.store import RedisStore
from tests.services.test_validation import SUPPORT


@pytest.fixture
def service(tiny_encoder: SentenceEncoder, redis_store: RedisStore) -> FeedbackService:
    context = TierContext(
        EncoderEmbedder(tiny_encoder),
        InnerLoopParams.constant(2, 0.05, 10.0),
        Limits(max_examples=30, max_texts=4),
        embeddings=EmbeddingLRU(1000),
    )
    adaptation = AdaptationService(context, redis_store)
    adaptation.adapt("acme", SUPPORT)
    return FeedbackService(adaptation)


def _rows(service: FeedbackService) -> list[dict]:
    rows = service.adaptation.store.load_support("acme")
    assert rows is not None
    return rows


def test_a_correction_is_a_new_version_with_its_source_recorded(service: FeedbackService) -> None:
    result = service.correct("acme", [Correction("where is the plastic card I ordered", "card_arrival", "refund")])
    assert (result.adapted.version, result.added, result.ignored_duplicates, result.relabelled) == (2, 1, 0, 0)
    assert result.adapted.counts["card_arrival"] == 4
    rows = _rows(service)
    assert {"text": "where is the plastic card I ordered", "label": "card_arrival", "source": FEEDBACK} in rows
    assert [example_source(row) for row in rows].count(FEEDBACK) == 1
    assert corrections_per_label(rows) == {"card_arrival": 1}


def test_duplicates_are_ignored_and_counted(service: FeedbackService) -> None:
    held = SUPPORT[0]
    result = service.correct(
        "acme",
        [Correction(held["text"], held["label"]), Correction("a brand new text", "refund"), Correction("x y", "fx")],
    )
    assert (result.added, result.ignored_duplicates) == (2, 1)
    rows = _rows(service)
    assert example_source(next(r for r in rows if r["text"] == held["text"])) == ADAPT  # the stored one stays
    assert corrections_per_label(rows) == {"refund": 1, "fx": 1}


def test_a_relabelled_text_replaces_its_old_example(service: FeedbackService) -> None:
    text = SUPPORT[0]["text"]  # a card_arrival example
    result = service.correct("acme", [Correction(text, "refund", "card_arrival")])
    assert (result.added, result.ignored_duplicates, result.relabelled) == (1, 0, 1)
    assert result.adapted.counts == {"card_arrival": 2, "exchange_rate": 3, "refund": 4}
    held = [row for row in _rows(service) if row["text"] == text]
    assert held == [{"text": text, "label": "refund", "source": FEEDBACK}]


def test_the_last_correction_of_a_text_in_one_request_wins(service: FeedbackService) -> None:
    result = service.correct("acme", [Correction("ambiguous", "refund"), Correction("ambiguous", "card_arrival")])
    assert (result.added, result.ignored_duplicates) == (1, 1)
    assert [r["label"] for r in _rows(service) if r["text"] == "ambiguous"] == ["card_arrival"]


def test_a_new_label_is_added_like_an_append_adds_it(service: FeedbackService) -> None:
    result = service.correct("acme", [Correction("cancel my subscription", "cancel")])
    assert "cancel" in result.adapted.labels and result.adapted.counts["cancel"] == 1


def test_sources_survive_a_later_append_and_a_repair(service: FeedbackService) -> None:
    service.correct("acme", [Correction("where is the plastic card I ordered", "card_arrival")])
    adaptation = service.adaptation
    adaptation.adapt("acme", [{"text": "convert euros to yen", "label": "exchange_rate"}], mode="append")
    assert corrections_per_label(_rows(service)) == {"card_arrival": 1}
    version = adaptation.store.current_version("acme")
    assert version is not None
    rebuilt = adaptation.rebuild("acme", version, None)
    assert rebuilt is not None
    assert corrections_per_label(_rows(service)) == {"card_arrival": 1}


@pytest.mark.parametrize(
    ("corrections", "code"),
    [
        ([], "no_corrections"),
        ([Correction(" \u200b ", "refund")], "empty_text"),
        ([Correction("fine text", "")], "empty_label"),
        ([Correction(f"text {i}", "refund") for i in range(5)], "too_many_corrections"),
    ],
)
def test_bad_corrections_are_refused_before_anything_is_written(
    service: FeedbackService, corrections: list[Correction], code: str
) -> None:
    with pytest.raises(ServiceError) as error:
        service.correct("acme", corrections)
    assert (error.value.status, error.value.code) == (422, code)
    assert service.adaptation.store.current_version("acme") == 1


def test_a_stale_expected_version_is_a_conflict(service: FeedbackService) -> None:
    service.correct("acme", [Correction("first fix", "refund")], expected_version=1)
    with pytest.raises(ServiceError) as error:
        service.correct("acme", [Correction("second fix", "refund")], expected_version=1)
    assert (error.value.status, error.value.code) == (409, "concurrent_update")
    assert service.adaptation.store.current_version("acme") == 2


def test_an_unknown_tenant_is_404(service: FeedbackService) -> None:
    with pytest.raises(ServiceError) as error:
        service.correct("nobody", [Correction("a text", "refund")])
    assert (error.value.status, error.value.code) == (404, "unknown_tenant")
    assert service.adaptation.store.current_version("nobody") is None


def test_a_multi_label_tenant_is_refused(service: FeedbackService) -> None:
    tickets = [{"text": "charged twice", "labels": ["billing"]}, {"text": "thanks", "labels": []}]
    service.adaptation.adapt("multi", tickets, task="multi_label")
    with pytest.raises(ServiceError) as error:
        service.correct("multi", [Correction("charged again", "billing")])
    assert (error.value.status, error.value.code) == (409, "task_mismatch")


def test_rows_without_a_source_read_as_adapt_and_stay_byte_for_byte() -> None:
    rows = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}, {"text": "x", "label": "x", "description": True}]
    assert [example_source(row) for row in rows] == [ADAPT, ADAPT, ADAPT]
    assert with_sources(rows, rows) is rows
    marked = with_sources(rows, [{"text": "b", "label": "y", "source": FEEDBACK}])
    assert marked[1] == {"text": "b", "label": "y", "source": FEEDBACK} and marked[0] == rows[0]
    assert with_sources(rows, [{"text": "b", "label": "y"}, {"text": "b", "label": "y", "source": FEEDBACK}]) == rows
