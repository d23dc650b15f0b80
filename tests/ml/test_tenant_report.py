"""The report's maths on hand-made embeddings: folds, accuracy intervals, ECE, mislabels, duplicates, suggestions."""

from __future__ import annotations

import math
import random
import time

import pytest
import torch
from torch.nn import functional as F

from app.ml.accuracy_interval import cross_validated_interval, design_effect, projection
from app.ml.calibration import FITTED, IDENTITY, TemperatureRule, best_factor, expected_calibration_error
from app.ml.learner import InnerLoopParams
from app.ml.suggest import suggest
from app.ml.tenant_fit import fit_embedded
from app.ml.tenant_report import (
    DenseConfusion,
    LearningCurve,
    Scored,
    SingleLabelReport,
    SparseConfusion,
    build_report,
    cross_validate,
    evaluate_head,
    label_counts,
    near_duplicates,
    stratified_folds,
    suspected_mislabels,
    wilson_interval,
)

INNER = InnerLoopParams.constant(steps=10, lr=0.05, scale=10.0)


def clusters(n_labels: int, shots: int, dim: int = 32, noise: float = 0.3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_labels, dim, generator=generator), dim=-1)
    targets = [y for y in range(n_labels) for _ in range(shots)]
    x = centres[torch.tensor(targets)] + noise * torch.randn(len(targets), dim, generator=generator) / math.sqrt(dim)
    return F.normalize(x, dim=-1), targets, [f"label{y}" for y in range(n_labels)]


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-4)
    assert all(wilson_interval(n, n)[1] == 1.0 and wilson_interval(0, n)[0] == 0.0 for n in range(1, 200))


def test_ece_on_a_hand_made_case() -> None:
    # two predictions at 0.9 (one right: bin accuracy 0.5) and two at 0.6 (both right): ECE = 0.5*0.4 + 0.5*0.4
    probabilities = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    targets = torch.tensor([0, 1, 0, 0])
    assert expected_calibration_error(probabilities, targets) == pytest.approx(0.4)
    perfect = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, torch.tensor([0, 1])) == pytest.approx(0.0)


def test_folds_are_stratified_leave_one_out_for_small_labels_and_skip_single_examples() -> None:
    targets = [0] * 10 + [1] * 3 + [2] * 1
    folds, not_evaluable, k = stratified_folds(targets, 3)
    assert k == 5 and not_evaluable == [2]
    assert sorted(folds[:10]) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # 2 per fold
    assert len(set(folds[10:13])) == 3 and -1 not in folds[10:13]  # each held out alone: leave-one-out
    assert folds[13] == -1  # never held out
    _, _, k_small = stratified_folds([0, 0, 1, 1, 1], 2)
    assert k_small == 3


def test_cross_validation_reports_every_part_and_the_single_example_label() -> None:
    x, targets, labels = clusters(4, 6)
    x = torch.cat([x, x[:1] * 0.5 + F.normalize(torch.randn(1, 32), dim=-1) * 0.5])
    targets = [*targets, 4]
    labels = [*labels, "lonely"]
    texts = [f"text {i}" for i in range(len(targets))]
    scored = cross_validate(x, targets, labels, texts, INNER)
    report = build_report(scored, labels, label_counts(targets, 5), x, targets, texts, "cross_validation")
    assert report.n_evaluated == 24 and report.not_evaluable == ["lonely"]
    assert report.accuracy is not None and report.accuracy_interval is not None
    assert report.accuracy > 0.9 and report.accuracy_interval[0] <= report.accuracy <= report.accuracy_interval[1]
    lonely = next(e for e in report.per_label if e.label == "lonely")
    assert not lonely.evaluable and lonely.recall is None
    assert report.labels_needing_examples[0].label == "lonely"
    assert isinstance(report.confusion, DenseConfusion) and len(report.confusion.matrix) == 5
    assert sum(map(sum, report.confusion.matrix)) == 24
    assert report.oos_tradeoff[0].rule == "tenant" and report.ece is not None and 0 <= report.ece <= 1


def test_confusion_is_sparse_above_fifty_labels() -> None:
    x, targets, labels = clusters(60, 2, noise=1.0)
    texts = [str(i) for i in range(len(targets))]
    scored = cross_validate(x, targets, labels, texts, INNER)
    report = build_report(scored, labels, label_counts(targets, 60), x, targets, texts, "cross_validation")
    confusion = report.confusion
    assert isinstance(confusion, SparseConfusion) and len(confusion.diagonal) == 60
    assert sum(confusion.diagonal) + sum(c.count for c in confusion.cells) == 120


def test_a_swapped_label_is_a_suspected_mislabel_and_a_copy_under_another_label_a_near_duplicate() -> None:
    x, targets, labels = clusters(3, 5, noise=0.1)
    targets = targets[:]
    targets[0] = 1  # an example of label0 filed under label1
    texts = [f"t{i}" for i in range(len(targets))]
    found = suspected_mislabels(x, targets, labels, texts)
    assert found[0].text == "t0" and found[0].nearest_label == "label0" and found[0].margin > 0
    duplicated = torch.cat([x, x[5:6]])
    pairs = near_duplicates(duplicated, [*targets, 2], labels, [*texts, "copy"])
    assert pairs and {pairs[0].a.text, pairs[0].b.text} == {"t5", "copy"}


def test_temperature_rule_lowers_confidence_without_changing_the_argmax() -> None:
    x, targets, labels = clusters(2, 2)
    y = torch.tensor(targets)
    sharp = fit_embedded(x, y, labels, INNER, temperature=IDENTITY)
    soft = fit_embedded(x, y, labels, INNER, temperature=TemperatureRule(intercept=math.log(0.25)))
    queries, _, _ = clusters(2, 10, seed=1)
    assert torch.equal(sharp.probabilities(queries).argmax(-1), soft.probabilities(queries).argmax(-1))
    assert soft.scale == pytest.approx(sharp.scale * 0.25)
    assert FITTED.factor(2, 2) > 0
    logits = torch.tensor([[2.0, 0.0]] * 3 + [[0.0, 2.0]])
    assert best_factor(logits, torch.tensor([0, 0, 1, 1])) < best_factor(logits, torch.tensor([0, 0, 0, 1]))


def test_suggestions_are_uncertain_and_diverse() -> None:
    x, targets, labels = clusters(2, 3, noise=0.05)
    head = fit_embedded(x, torch.tensor(targets), labels, INNER)
    middle = F.normalize(x[0] + x[3], dim=-1)
    pool = torch.stack([middle, middle, x[0] * 0.99, F.normalize(middle + 0.01 * torch.randn(32), dim=-1)])
    picks = suggest(head, pool, x, 2)
    assert picks[0].index in (0, 1, 3) and "unsure" in picks[0].reason
    assert {picks[0].index, picks[1].index} != {0, 1}  # the exact duplicate is not picked twice
    assert suggest(head, pool, x, 10)[-1].index in range(4) and len(suggest(head, pool, x, 10)) == 4


def test_a_300_label_report_is_quick() -> None:
    x, targets, labels = clusters(300, 3, dim=64, noise=0.5)
    texts = [str(i) for i in range(len(targets))]
    started = time.perf_counter()
    scored = cross_validate(x, targets, labels, texts, INNER)
    report = build_report(scored, labels, label_counts(targets, 300), x, targets, texts, "cross_validation")
    assert report.n_evaluated == 900 and isinstance(report.confusion, SparseConfusion)
    assert time.perf_counter() - started < 30


def test_the_learning_curve_projects_along_log_examples_per_label() -> None:
    curve = LearningCurve(
        full_per_label=5.0, train_per_label=4.0, reduced_per_label=3.0, accuracy=0.77, reduced_accuracy=0.74
    )
    expected = 0.77 + 0.03 * math.log(5 / 4) / math.log(4 / 3)
    assert curve.projected() == pytest.approx(expected)
    flat = LearningCurve(5.0, 4.0, 3.0, accuracy=0.77, reduced_accuracy=0.80)  # noise: never projected downwards
    assert flat.projected() == pytest.approx(0.77)
    assert LearningCurve(2.0, 1.0, 1.0, 0.5, 0.5).projected() == 0.5  # nothing to thin: no projection


def measured(report: SingleLabelReport) -> float:
    """correct / evaluated, counted from the report's own confusion matrix."""
    assert isinstance(report.confusion, DenseConfusion)
    matrix = report.confusion.matrix
    return sum(matrix[y][y] for y in range(len(matrix))) / report.n_evaluated


def test_cross_validation_reports_the_measured_accuracy_and_a_bounded_projection() -> None:
    x, targets, labels = clusters(6, 5, noise=2.0, seed=3)
    texts = [str(i) for i in range(len(targets))]
    scored = cross_validate(x, targets, labels, texts, INNER)
    assert scored.curve is not None
    assert (
        scored.curve.full_per_label == 5 and scored.curve.train_per_label == 4 and scored.curve.reduced_per_label == 3
    )
    report = build_report(scored, labels, label_counts(targets, 6), x, targets, texts, "cross_validation")
    assert report.accuracy is not None and report.accuracy_interval is not None
    assert report.projected_accuracy is not None and report.learning_curve is not None
    assert report.accuracy == pytest.approx(measured(report), abs=1e-4) and report.accuracy < 1
    low, high = report.accuracy_interval
    assert report.accuracy <= report.projected_accuracy and low < report.projected_accuracy < high
    curve = report.learning_curve
    assert [curve.reduced_per_label, curve.train_per_label, curve.full_per_label] == [3.0, 4.0, 5.0]
    assert curve.accuracy == pytest.approx(report.accuracy, abs=1e-6)
    assert abs(curve.accuracy - curve.reduced_accuracy) - 1e-6 <= curve.discordant <= 1


def test_a_projection_to_100_percent_never_becomes_the_headline() -> None:
    """12 labels, 57 of 60 held-out predictions right, and a learning curve steep enough to project past 100 %."""
    n_labels, per_label = 12, 5
    targets = torch.tensor([y for y in range(n_labels) for _ in range(per_label)])
    predicted = targets.clone()
    predicted[[0, 5, 10]] = (predicted[[0, 5, 10]] + 1) % n_labels  # three errors
    labels = [f"label{y}" for y in range(n_labels)]
    texts = [f"text {i}" for i in range(len(targets))]
    x = F.one_hot(targets, n_labels).float()
    scored = Scored(
        texts=texts,
        targets=targets,
        probabilities=F.one_hot(predicted, n_labels).float() * 0.9 + 0.1 / n_labels,
        oos_scores=torch.full((len(targets),), 0.9),
        thresholds=[0.5] * len(targets),
        n_folds=5,
        curve=LearningCurve(5.0, 4.0, 3.0, accuracy=0.95, reduced_accuracy=0.60),
    )
    assert scored.curve is not None and scored.curve.projected() == 1.0
    counts = [per_label] * n_labels
    report = build_report(scored, labels, counts, x, targets.tolist(), texts, "cross_validation")
    high = wilson_interval(57, 60)[1]
    assert report.accuracy == 0.95 and report.projected_accuracy is not None
    assert 0.95 < report.projected_accuracy <= high < 1
    assert report.accuracy_interval is not None and report.accuracy_interval[0] < high <= report.accuracy_interval[1]
    assert report.learning_curve is not None
    assert [report.learning_curve.reduced_accuracy, report.learning_curve.accuracy] == [0.6, 0.95]


def test_labels_in_equal_need_keep_their_order() -> None:
    """`b`: recall 1/4 with 3 examples, `a`: recall 1/3 with 2; both need (1 - recall) + 1 / (1 + examples) = 1."""
    labels = ["b", "a"]
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    predicted = torch.tensor([0, 1, 1, 1, 1, 0, 0])
    texts = [f"t{i}" for i in range(len(targets))]
    scored = Scored(
        texts=texts,
        targets=targets,
        probabilities=F.one_hot(predicted, 2).float() * 0.8 + 0.1,
        oos_scores=torch.full((len(targets),), 0.9),
        thresholds=[0.5] * len(targets),
    )
    report = build_report(scored, labels, [3, 2], torch.eye(2)[targets], targets.tolist(), texts, "test_set")
    assert [need.label for need in report.labels_needing_examples] == ["b", "a"]


def test_a_test_set_report_has_no_projection() -> None:
    x, targets, labels = clusters(3, 4, noise=0.1)
    head = fit_embedded(x, torch.tensor(targets), labels, INNER)
    texts = [str(i) for i in range(len(targets))]
    scored = evaluate_head(head, x, targets, texts)
    report = build_report(scored, labels, label_counts(targets, 3), x, targets, texts, "test_set")
    assert report.accuracy == pytest.approx(measured(report), abs=1e-4)
    assert report.projected_accuracy is None and report.learning_curve is None
    right = round(measured(report) * report.n_evaluated)
    assert report.accuracy_interval == wilson_interval(right, report.n_evaluated)  # one fixed classifier


def test_labels_are_clusters_when_their_accuracies_differ() -> None:
    assert design_effect([4, 4, 4, 4], [5, 5, 5, 5]) == 1.0  # every label alike: binomial
    assert design_effect([5, 5, 0, 0], [5, 5, 5, 5]) > 2.0  # all or nothing per label
    assert design_effect([3], [5]) == 1.0 and design_effect([0, 0], [0, 0]) == 1.0


def simulated_tenant(
    rng: random.Random, n_labels: int, shots: int, spread: float
) -> tuple[list[int], list[int], float]:
    """Held-out counts of a tenant whose fold models' accuracy on a label is the served model's plus or minus
    `spread` (which examples the label drew), and the served model's true accuracy."""
    served = [rng.uniform(0.4, 0.7) for _ in range(n_labels)]
    folds = [a + rng.choice((-spread, spread)) for a in served]
    correct = [sum(rng.random() < b for _ in range(shots)) for b in folds]
    return correct, [shots] * n_labels, sum(served) / n_labels


def test_the_interval_covers_a_known_truth_where_wilson_does_not() -> None:
    """200 synthetic 77-way 5-shot tenants with label-level errors: the clustered interval holds the served model's
    true accuracy about 95 % of the time, Wilson's (independent rows) far less often; both stay informative."""
    rng = random.Random(0)
    ours = wilsons = 0
    widths = []
    for _ in range(200):
        correct, scored, truth = simulated_tenant(rng, 77, 5, spread=0.3)
        low, high = cross_validated_interval(correct, scored, None)
        ours += low <= truth <= high
        widths.append(high - low)
        low, high = wilson_interval(sum(correct), sum(scored))
        wilsons += low <= truth <= high
    assert ours >= 180 and wilsons < 170
    assert sum(widths) / len(widths) < 0.17


def test_the_interval_narrows_as_labels_are_added() -> None:
    rng = random.Random(1)
    widths = []
    for n_labels in (10, 40, 160, 640):
        runs = [simulated_tenant(rng, n_labels, 5, spread=0.2) for _ in range(30)]
        widths.append(sum(h - lo for lo, h in (cross_validated_interval(c, s, None) for c, s, _ in runs)) / 30)
    assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0] / 4


def test_the_interval_is_centred_on_the_projection_and_widens_with_its_uncertainty() -> None:
    correct, scored = [4] * 77, [5] * 77  # 0.80 held out, every label alike
    plain = cross_validated_interval(correct, scored, None)
    assert plain == wilson_interval(308, 385)
    steady = LearningCurve(5.0, 4.0, 3.0, accuracy=0.8, reduced_accuracy=0.8, discordant=0.0)
    assert cross_validated_interval(correct, scored, steady) == pytest.approx(plain)
    rising = LearningCurve(5.0, 4.0, 3.0, accuracy=0.8, reduced_accuracy=0.76, discordant=0.1)
    low, high = cross_validated_interval(correct, scored, rising)
    centre = projection(rising, 308, 385)
    assert centre > 0.8 and low < centre < high
    assert high - low > plain[1] - plain[0]  # the gain's sampling and model error add to the width
    noisier = LearningCurve(5.0, 4.0, 3.0, accuracy=0.8, reduced_accuracy=0.76, discordant=0.3)
    wider = cross_validated_interval(correct, scored, noisier)
    assert wider[1] - wider[0] > high - low
    assert cross_validated_interval(correct, scored, rising, bias_share=0.0)[1] < high
