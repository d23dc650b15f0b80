"""Validation work is bounded by the request's counts: a list of labels over `max_labels` is refused before any
of its labels is checked, and a full support set costs operations linear in its size (counted, never timed)."""

from __future__ import annotations

import pytest

from app.ml.embedder import EncoderEmbedder
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams
from app.services import validation
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.errors import ServiceError
from app.services.validation import Limits, validate_support
from app.store import MemoryStore
from tests.services.test_validation import SUPPORT

LIMITS = Limits()  # the served defaults: 5,000 examples, 500 labels
MANY = 16_000


class CountingLabel(str):
    """A label that counts how often it is hashed: each set or dict operation on it."""

    hashes = 0

    def __hash__(self) -> int:
        CountingLabel.hashes += 1
        return str.__hash__(self)


@pytest.fixture
def label_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Where `check_label` was called, in order."""
    where: list[str] = []
    check = validation.check_label

    def counted(label: str, limits: Limits, at: str) -> None:
        where.append(at)
        check(label, limits, at)

    monkeypatch.setattr(validation, "check_label", counted)
    return where


def _refused(call) -> str:
    with pytest.raises(ServiceError) as refused:
        call()
    assert refused.value.status == 422
    return refused.value.code


def test_too_many_declared_labels_are_refused_before_any_label_is_checked(label_checks: list[str]) -> None:
    declared = [f"intent {i}" for i in range(MANY)]
    assert _refused(lambda: validate_support(SUPPORT, declared, LIMITS)) == "too_many_labels"
    assert label_checks == []


def test_too_many_label_descriptions_are_refused_before_any_is_checked(label_checks: list[str]) -> None:
    descriptions = {f"intent {i}": f"what intent {i} means" for i in range(MANY)}
    assert _refused(lambda: validate_support(SUPPORT, None, LIMITS, descriptions)) == "too_many_labels"
    assert label_checks == []


def test_an_example_with_too_many_labels_is_refused_at_the_first_label_past_the_limit(
    label_checks: list[str],
) -> None:
    examples = [{"text": "everything at once", "labels": [f"tag {i}" for i in range(MANY)]}]
    code = _refused(lambda: validate_support(examples, None, LIMITS, task="multi_label"))
    assert code == "too_many_labels" and len(label_checks) == LIMITS.max_labels


def test_too_many_labels_to_remove_are_refused_before_the_store_is_read(tiny_encoder: SentenceEncoder) -> None:
    context = TierContext(EncoderEmbedder(tiny_encoder), InnerLoopParams.constant(2, 0.04, 10.0), LIMITS)
    service = AdaptationService(context, MemoryStore())
    remove = [f"intent {i}" for i in range(MANY)]
    code = _refused(lambda: service.adapt("acme", SUPPORT, mode="append", remove_labels=remove))
    assert code == "too_many_labels"


def test_a_full_support_set_validates_in_operations_linear_in_its_size() -> None:
    labels = [CountingLabel(f"intent {i}") for i in range(LIMITS.max_labels)]
    examples = [{"text": f"example text {i}", "label": labels[i % len(labels)]} for i in range(LIMITS.max_examples)]
    CountingLabel.hashes = 0
    support = validate_support(examples, labels, LIMITS)
    assert support.labels == labels and support.targets[:3] == [0, 1, 2]
    assert CountingLabel.hashes <= 10 * (len(examples) + len(labels))
