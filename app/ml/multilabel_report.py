"""A multi-label tenant's report: cross-validation of its support set through the `/adapt` maths, or its head on
a labeled test set. Micro/macro-F1, exact match, labels per text and per-label precision, recall, F1 and
threshold; the labels that need examples.

Cross-validation: every fold's head in one inner loop (`tenant_fit.fold_scores`), as `/adapt` does; the
decision that judges a fold's examples (thresholds and top-label rule, `thresholds.fit_decision`) is fitted on
the other folds' out-of-fold scores only, so no example chooses the rule that judges it. The result is a
`MultiLabelReport` at full precision; rounding and field names are the HTTP layer's. Pure PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from app.ml.head import TenantHead
from app.ml.learner import InnerLoopParams
from app.ml.multilabel_decision import applies
from app.ml.tenant_fit import held_out_scores
from app.ml.thresholds import ThresholdRule, fit_decision

LOW_F1 = 0.5
FEW_EXAMPLES = 3


@dataclass(frozen=True)
class MultiLabelMetrics:
    """One label's decisions: None where a ratio has nothing to divide (no true or predicted positive)."""

    label: str
    examples: int  # support texts the label applies to
    support: int  # scored texts the label applies to
    precision: float | None
    recall: float | None
    f1: float | None
    threshold: float  # the label's decision threshold


@dataclass(frozen=True)
class MultiLabelNeed:
    """A label that needs examples, and why."""

    label: str
    examples: int
    f1: float | None
    reasons: list[str]


@dataclass(frozen=True)
class LabelsPerText:
    """Mean labels per scored text: true and predicted."""

    true: float
    predicted: float


@dataclass(frozen=True)
class MultiLabelReport:
    """A multi-label tenant's report (see the module docstring); the metrics are None when it is not evaluable."""

    method: Literal["cross_validation", "test_set"]
    n_folds: int
    n_labels: int
    n_examples: int  # in the support set
    n_negatives: int  # support examples to which no label applies
    n_evaluated: int  # texts scored
    evaluable: bool
    micro_f1: float | None
    macro_f1: float | None  # mean F1 over the labels with a true or predicted positive
    exact_match: float | None  # share of texts whose whole label set is right
    labels_per_text: LabelsPerText
    per_label: list[MultiLabelMetrics]
    labels_needing_examples: list[MultiLabelNeed]  # lowest F1 first


def cross_validated_report(
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    labels: list[str],
    inner: InnerLoopParams,
    rule: ThresholdRule | None = None,
    n_examples: int | None = None,
) -> MultiLabelReport:
    """The report of a multi-hot support set: the fit rows `embeddings` / `targets` `[n, c]`, of which the first
    `n_examples` (default: all) are the examples held out in turn; descriptions and label names train in every
    fold, as `/adapt` fits them (`tenant_fit.held_out_scores`)."""
    rule = rule or ThresholdRule()
    n = targets.shape[0] if n_examples is None else n_examples
    held = held_out_scores(embeddings, targets, n, inner, rule)
    targets = targets[:n]
    n_folds = int(held.ids.max()) + 1 if n >= 2 else 0
    predicted = torch.zeros_like(targets, dtype=torch.bool)
    for fold in range(n_folds):
        inside, outside = held.ids == fold, held.ids != fold
        decision = fit_decision(held.scores[outside], targets[outside], held.valid[outside], rule)
        predicted[inside] = applies(held.scores[inside], decision.thresholds, decision.min_labels)
    served = fit_decision(held.scores, targets, held.valid, rule).thresholds
    return _report("cross_validation", n_folds, predicted, targets, labels, targets, served, evaluable=n_folds >= 2)


def labeled_set_report(
    head: TenantHead, embeddings: torch.Tensor, truth: torch.Tensor, support: torch.Tensor
) -> MultiLabelReport:
    """The head's decisions on a labeled test set (`truth` multi-hot `[m, c]`); `support`: the support's multi-hot."""
    assert head.thresholds is not None
    predicted = head.applying(head.scores(embeddings))
    return _report("test_set", 0, predicted, truth, head.labels, support, head.thresholds, evaluable=len(truth) > 0)


def _report(
    method: Literal["cross_validation", "test_set"],
    n_folds: int,
    predicted: torch.Tensor,
    truth: torch.Tensor,
    labels: list[str],
    support: torch.Tensor,
    thresholds: torch.Tensor,
    evaluable: bool,
) -> MultiLabelReport:
    predicted, positive = predicted.bool(), truth.bool()
    tp = (predicted & positive).sum(dim=0).float()
    fp = (predicted & ~positive).sum(dim=0).float()
    fn = (~predicted & positive).sum(dim=0).float()
    examples = support.sum(dim=0).long().tolist()
    per_label, needs = [], []
    for j, label in enumerate(labels):
        f1 = _ratio(2 * tp[j], 2 * tp[j] + fp[j] + fn[j])
        per_label.append(
            MultiLabelMetrics(
                label=label,
                examples=examples[j],
                support=int(positive[:, j].sum()),
                precision=_ratio(tp[j], tp[j] + fp[j]),
                recall=_ratio(tp[j], tp[j] + fn[j]),
                f1=f1,
                threshold=float(thresholds[j]),
            )
        )
        reasons = []
        if f1 is not None and f1 < LOW_F1:
            reasons.append(f"low F1 {f1:.2f}")
        if examples[j] < FEW_EXAMPLES:
            reasons.append(f"few examples ({examples[j]})")
        if reasons:
            needs.append(MultiLabelNeed(label, examples[j], f1, reasons))
    needs.sort(key=lambda need: (need.f1 if need.f1 is not None else -1.0, need.examples))
    n = truth.shape[0]
    evaluable = bool(evaluable and n > 0)
    f1s = [entry.f1 for entry in per_label if entry.f1 is not None]
    return MultiLabelReport(
        method=method,
        n_folds=n_folds,
        n_labels=len(labels),
        n_examples=int(support.shape[0]),
        n_negatives=int((support.sum(dim=1) == 0).sum()),
        n_evaluated=n,
        evaluable=evaluable,
        micro_f1=_ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()) if evaluable else None,
        macro_f1=sum(f1s) / len(f1s) if evaluable and f1s else None,
        exact_match=float((predicted == positive).all(dim=1).float().mean()) if evaluable else None,
        labels_per_text=LabelsPerText(
            true=float(positive.sum(dim=1).float().mean()) if n else 0.0,
            predicted=float(predicted.sum(dim=1).float().mean()) if n else 0.0,
        ),
        per_label=per_label,
        labels_needing_examples=needs,
    )


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> float | None:
    return None if float(denominator) == 0 else float(numerator) / float(denominator)
