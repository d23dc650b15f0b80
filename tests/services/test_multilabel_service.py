"""Multi-label tenants through the services (built like a server by `app.bootstrap`, tiny encoder), on both
stores: validation codes, storage round trip, append / remove / task changes, predictions and overrides."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.bootstrap import Runtime, build_runtime
from app.config import Settings
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams
from app.ml.multilabel_report import MultiLabelReport
from app.services.errors import ServiceError

TICKETS: list[dict[str, Any]] = [
    {"text": "I was charged twice and the app crashes on login", "labels": ["billing", "bug"]},
    {"text": "refund my last payment please", "labels": ["billing"]},
    {"text": "my invoice shows the wrong amount", "labels": ["billing"]},
    {"text": "the export button throws an error", "labels": ["bug"]},
    {"text": "the page goes blank after I click save", "labels": ["bug"]},
    {"text": "can you add a dark mode", "labels": ["feature"]},
    {"text": "please support exporting to csv", "labels": ["feature"]},
    {"text": "crash when exporting, and please add csv", "labels": ["bug", "feature"]},
    {"text": "thanks, all good now", "labels": []},
]
SINGLE = [
    {"text": "my card has not arrived yet", "label": "card"},
    {"text": "what is the euro exchange rate", "label": "fx"},
]


@pytest.fixture(params=["memory", "redis"])
def runtime(request: pytest.FixtureRequest, tiny_encoder: SentenceEncoder) -> Iterator[Runtime]:
    options: dict[str, Any] = {"store": request.param}
    if request.param == "redis":
        options |= {
            "redis_url": request.getfixturevalue("redis_url"),
            "redis_prefix": request.getfixturevalue("redis_prefix"),
        }
    settings = Settings(
        checkpoint="none", max_examples=50, max_labels=10, batching_enabled=False, _env_file=None, **options
    )
    runtime = build_runtime(settings, (tiny_encoder, InnerLoopParams.constant(2, 0.04, 10.0), None))
    yield runtime
    runtime.close()


def _code(call: Any) -> str:
    with pytest.raises(ServiceError) as caught:
        call()
    return caught.value.code


def test_multilabel_adapt_is_stored_with_its_task_thresholds_and_rows(runtime: Runtime) -> None:
    result = runtime.tiers.default.adaptation.adapt("acme", TICKETS, task="multi_label")
    assert result.task == "multi_label" and result.n_negatives == 1
    assert result.counts == {"billing": 3, "bug": 4, "feature": 3}
    assert set(result.thresholds or {}) == {"billing", "bug", "feature"}
    assert all(0 < t < 1 for t in (result.thresholds or {}).values())
    assert result.oos_threshold is None
    rows = runtime.store.load_support("acme")
    assert rows is not None and {"text": "thanks, all good now", "labels": []} in rows
    described = runtime.tenants.describe("acme")
    assert described.status == "ready" and described.model.task == "multi_label"
    assert described.model.thresholds == result.thresholds and described.model.n_negatives == 1
    version, head = runtime.tiers.default.prediction.head_for("acme")
    assert version == result.version and head.multi_label


def test_example_shapes_are_checked_against_the_task(runtime: Runtime) -> None:
    adapt = runtime.tiers.default.adaptation.adapt
    assert _code(lambda: adapt("a", TICKETS)) == "multi_label_example"  # default task: single-label
    assert _code(lambda: adapt("a", SINGLE, task="multi_label")) == "single_label_example"
    assert _code(lambda: adapt("a", [{"text": "x"}, *TICKETS], task="multi_label")) == "missing_label"
    twice = [{"text": "x", "labels": ["bug", "bug"]}, *TICKETS]
    assert _code(lambda: adapt("a", twice, task="multi_label")) == "duplicate_label"
    blank = [{"text": "x", "labels": ["bug", "\u200b"]}, *TICKETS]
    assert _code(lambda: adapt("a", blank, task="multi_label")) == "empty_label"
    surrogate = [{"text": "x", "labels": ["\ud800"]}, *TICKETS]
    assert _code(lambda: adapt("a", surrogate, task="multi_label")) == "invalid_label"
    lonely = [{"text": "x", "labels": ["bug"]}, {"text": "y", "labels": ["bug"]}]
    assert _code(lambda: adapt("a", lonely, task="multi_label")) == "too_few_labels"
    declared = runtime.tiers.default.adaptation.adapt(
        "a", TICKETS, labels=["feature", "bug", "billing"], task="multi_label"
    )
    assert declared.labels == ["feature", "bug", "billing"]
    with_negative = [{"text": "x", "labels": ["bug"]}, {"text": "y", "labels": ["bug"]}, {"text": "z", "labels": []}]
    assert runtime.tiers.default.adaptation.adapt("b", with_negative, task="multi_label").labels == [
        "bug"
    ]  # yes/no classifier


def test_append_keeps_the_task_and_another_task_is_a_conflict(runtime: Runtime) -> None:
    first = runtime.tiers.default.adaptation.adapt("acme", TICKETS, task="multi_label")
    more = [{"text": "where do I download my receipt", "labels": ["billing"]}]
    appended = runtime.tiers.default.adaptation.adapt("acme", more, mode="append")  # task omitted: the tenant's own
    assert appended.task == "multi_label" and appended.counts["billing"] == 4
    assert _code(
        lambda: runtime.tiers.default.adaptation.adapt("acme", SINGLE, mode="append", task="single_label")
    ) == ("task_mismatch")
    assert (
        _code(lambda: runtime.tiers.default.adaptation.adapt("acme", SINGLE, mode="append")) == "single_label_example"
    )
    assert runtime.store.current_version("acme") == appended.version == first.version + 1
    replaced = runtime.tiers.default.adaptation.adapt("acme", SINGLE)  # changing the task is an explicit replace
    assert replaced.task == "single_label" and runtime.tenants.describe("acme").model.task == "single_label"


def test_removing_a_label_keeps_its_examples_as_negatives(runtime: Runtime) -> None:
    runtime.tiers.default.adaptation.adapt("acme", TICKETS, task="multi_label")
    result = runtime.tiers.default.adaptation.adapt("acme", [], mode="append", remove_labels=["feature"])
    assert result.labels == ["billing", "bug"] and result.n_negatives == 3  # 2 feature-only texts + the negative
    rows = runtime.store.load_support("acme") or []
    assert {"text": "can you add a dark mode", "labels": []} in rows
    assert {"text": "crash when exporting, and please add csv", "labels": ["bug"]} in rows


def test_multilabel_predictions_and_threshold_overrides(runtime: Runtime) -> None:
    runtime.tiers.default.adaptation.adapt("acme", TICKETS, task="multi_label")
    texts = ["I was charged twice and the app crashes on login", "hello there"]
    result = runtime.tiers.default.prediction.predict("acme", texts, top_k=3)
    assert result.task == "multi_label"
    head = runtime.tiers.default.prediction.head_for("acme")[1]
    for prediction in result.predictions:
        assert prediction.labels is not None
        applied = {label for label, _ in prediction.labels}
        expected = {
            label for (label, score) in prediction.top_k if score >= float(head.thresholds[head.labels.index(label)])
        }  # type: ignore[index]
        assert applied == expected
        assert prediction.out_of_scope == (not applied) and prediction.label == (
            prediction.labels[0][0] if applied else None
        )
    scores = sorted(score for p in result.predictions for _, score in p.top_k)
    low, middle = scores[0] * 0.999, (scores[2] + scores[3]) / 2  # between two scores: no ties
    everything = runtime.tiers.default.prediction.predict("acme", texts, label_threshold=low)
    assert all(len(p.labels or []) == 3 for p in everything.predictions) and everything.label_threshold == low
    some = runtime.tiers.default.prediction.predict(
        "acme", texts, top_k=3, label_threshold=middle
    )  # one threshold for all
    for p in some.predictions:
        assert {label for label, _ in p.labels or []} == {label for label, score in p.top_k if score >= middle}
    assert 0 < sum(len(p.labels or []) for p in some.predictions) < 6
    assert _code(lambda: runtime.tiers.default.prediction.predict("acme", texts, oos_threshold=0.3)) == "invalid_option"
    runtime.tiers.default.adaptation.adapt("single", SINGLE)
    assert (
        _code(lambda: runtime.tiers.default.prediction.predict("single", texts, label_threshold=0.5))
        == "invalid_option"
    )
    assert runtime.tiers.default.prediction.predict("single", texts).predictions[0].labels is None


def test_multilabel_tenant_is_rebuilt_as_multilabel(runtime: Runtime) -> None:
    first = runtime.tiers.default.adaptation.adapt("acme", TICKETS, task="multi_label")
    rebuilt = runtime.tiers.default.adaptation.rebuild("acme", first.version, None)
    assert rebuilt is not None
    version, head = rebuilt
    assert version == first.version + 1 and head.multi_label
    assert runtime.tenants.describe("acme").model.task == "multi_label"


def test_multilabel_report_and_suggestions(runtime: Runtime) -> None:
    adapted = runtime.tiers.default.adaptation.adapt("acme", TICKETS, task="multi_label")
    evaluation = runtime.tiers.default.insight.evaluate("acme")
    report = evaluation.report
    assert isinstance(report, MultiLabelReport) and report.method == "cross_validation" and report.n_folds == 5
    assert report.n_examples == len(TICKETS) and report.n_negatives == 1 and report.n_evaluated == len(TICKETS)
    assert {entry.label for entry in report.per_label} == {"billing", "bug", "feature"}
    assert {e.label: e.threshold for e in report.per_label} == pytest.approx(adapted.thresholds, abs=1e-4)
    assert report.micro_f1 is not None and 0.0 <= report.micro_f1 <= 1.0
    assert report.labels_per_text.true == pytest.approx(10 / 9, abs=1e-3)
    assert runtime.tiers.default.insight.evaluate("acme").cached
    test_set = [{"text": "refund my last payment please", "labels": ["billing"]}, {"text": "hi", "labels": []}]
    on_test = runtime.tiers.default.insight.evaluate("acme", examples=test_set).report
    assert on_test.method == "test_set" and on_test.n_evaluated == 2
    assert _code(lambda: runtime.tiers.default.insight.evaluate("acme", examples=[{"text": "x", "label": "bug"}])) == (
        "single_label_example"
    )
    assert _code(
        lambda: runtime.tiers.default.insight.evaluate("acme", examples=[{"text": "x", "labels": ["nope"]}])
    ) == ("unknown_label")
    picks = runtime.tiers.default.insight.suggest("acme", ["a crash while paying", "new feature idea", "thanks"], 2)
    assert len(picks.suggestions) == 2
    for _, suggestion in picks.suggestions:
        assert suggestion.runner_up in {"billing", "bug", "feature"} and suggestion.margin >= 0
