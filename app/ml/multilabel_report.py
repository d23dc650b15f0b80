"""A multi-label tenant's report: cross-validation of its support set through the `/adapt` maths, or its head on
a labeled test set. Micro/macro-F1, exact match, labels per text and per-label precision, recall, F1 and
threshold; the labels that need examples.

Cross-validation: every fold's head in one inner loop (`tenant_fit.fold_scores`), as `/adapt` does; the
thresholds that decide a fold's examples are fitted on the other folds' out-of-fold scores only, so no example
chooses the threshold that judges it. Pure PyTorch.
"""

from __future__ import annotations

from typing import Any

import torch

from app.ml.head import TenantHead
from app.ml.learner import InnerLoopParams
from app.ml.tenant_fit import fold_scores
from app.ml.thresholds import ThresholdRule, fit_thresholds, out_of_fold_scores

LOW_F1 = 0.5
FEW_EXAMPLES = 3


def cross_validated_report(
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    labels: list[str],
    inner: InnerLoopParams,
    rule: ThresholdRule | None = None,
) -> dict[str, Any]:
    """The report of a multi-hot support set `targets` `[n, c]` (descriptions, if any, excluded by the caller)."""
    rule = rule or ThresholdRule()
    n = targets.shape[0]
    held = out_of_fold_scores(targets, rule.folds, lambda ids: fold_scores(embeddings, targets, ids, inner))
    n_folds = int(held.ids.max()) + 1 if n >= 2 else 0
    predicted = torch.zeros_like(targets, dtype=torch.bool)
    for fold in range(n_folds):
        inside, outside = held.ids == fold, held.ids != fold
        thresholds = fit_thresholds(held.scores[outside], targets[outside], held.valid[outside], rule)
        predicted[inside] = held.scores[inside] >= thresholds
    served = fit_thresholds(held.scores, targets, held.valid, rule)
    return _report("cross_validation", n_folds, predicted, targets, labels, targets, served, evaluable=n_folds >= 2)


def labeled_set_report(
    head: TenantHead, embeddings: torch.Tensor, truth: torch.Tensor, support: torch.Tensor
) -> dict[str, Any]:
    """The head's decisions on a labeled test set (`truth` multi-hot `[m, c]`); `support`: the support's multi-hot."""
    assert head.thresholds is not None
    predicted = head.scores(embeddings) >= head.thresholds
    return _report("test_set", 0, predicted, truth, head.labels, support, head.thresholds, evaluable=len(truth) > 0)


def _report(
    method: str,
    n_folds: int,
    predicted: torch.Tensor,
    truth: torch.Tensor,
    labels: list[str],
    support: torch.Tensor,
    thresholds: torch.Tensor,
    evaluable: bool,
) -> dict[str, Any]:
    predicted, positive = predicted.bool(), truth.bool()
    tp = (predicted & positive).sum(dim=0).float()
    fp = (predicted & ~positive).sum(dim=0).float()
    fn = (~predicted & positive).sum(dim=0).float()
    examples = support.sum(dim=0).long().tolist()
    per_label, needs = [], []
    for j, label in enumerate(labels):
        precision = _ratio(tp[j], tp[j] + fp[j])
        recall = _ratio(tp[j], tp[j] + fn[j])
        f1 = _ratio(2 * tp[j], 2 * tp[j] + fp[j] + fn[j])
        per_label.append(
            {
                "label": label,
                "examples": examples[j],
                "support": int(positive[:, j].sum()),
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "threshold": round(float(thresholds[j]), 4),
            }
        )
        reasons = []
        if f1 is not None and f1 < LOW_F1:
            reasons.append(f"low F1 {f1:.2f}")
        if examples[j] < FEW_EXAMPLES:
            reasons.append(f"few examples ({examples[j]})")
        if reasons:
            needs.append({"label": label, "examples": examples[j], "f1": f1, "reasons": reasons})
    needs.sort(key=lambda need: (need["f1"] if need["f1"] is not None else -1.0, need["examples"]))
    n = truth.shape[0]
    micro = _ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())
    f1s = [entry["f1"] for entry in per_label if entry["f1"] is not None]
    return {
        "task": "multi_label",
        "method": method,
        "n_folds": n_folds,
        "n_labels": len(labels),
        "n_examples": int(support.shape[0]),
        "n_negatives": int((support.sum(dim=1) == 0).sum()),
        "n_evaluated": n,
        "evaluable": bool(evaluable and n > 0),
        "micro_f1": micro if evaluable else None,
        "macro_f1": round(sum(f1s) / len(f1s), 4) if evaluable and f1s else None,
        "exact_match": round(float((predicted == positive).all(dim=1).float().mean()), 4) if evaluable and n else None,
        "labels_per_text": {
            "true": round(float(positive.sum(dim=1).float().mean()), 3) if n else 0.0,
            "predicted": round(float(predicted.sum(dim=1).float().mean()), 3) if n else 0.0,
        },
        "per_label": per_label,
        "labels_needing_examples": needs,
    }


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> float | None:
    return None if float(denominator) == 0 else round(float(numerator) / float(denominator), 4)
