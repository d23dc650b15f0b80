"""The served multi-label decision rule, and its smooth form for meta-training.

A label applies to a text when its sigmoid score reaches the label's threshold; with `min_labels = 1` the text's
top-scoring label applies as well (a tenant whose every example carries a label: each text gets at least one).
`soft_decision` is the same rule with the step functions relaxed, so a query loss can be back-propagated through
the rule that is served (`soft_f1_loss`).
"""

from __future__ import annotations

import torch


def top_label_mask(scores: torch.Tensor) -> torch.Tensor:
    """Bool `[n, c]`: True at each row's highest score (the first on ties)."""
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, scores.argmax(dim=1, keepdim=True), True)


def applies(scores: torch.Tensor, thresholds: torch.Tensor, min_labels: int = 0) -> torch.Tensor:
    """Bool `[n, c]`: the labels that apply to each text under the served rule."""
    hits = scores >= thresholds
    if min_labels > 0 and scores.shape[1] > 0:
        hits = hits | top_label_mask(scores)
    return hits


def soft_decision(
    logits: torch.Tensor, thresholds: torch.Tensor, min_labels: int, sharpness: float = 20.0
) -> torch.Tensor:
    """`[n, c]` in (0, 1), the differentiable `applies`: sigmoid(sharpness * (sigmoid(logit) - t)) for a score
    that reaches its threshold; with `min_labels = 1`, OR-ed (1 - (1 - a)(1 - b)) with the softmax of the logits
    over labels as the soft top-label indicator."""
    above = torch.sigmoid(sharpness * (torch.sigmoid(logits) - thresholds))
    if min_labels <= 0:
        return above
    top = torch.softmax(logits, dim=1)
    return 1.0 - (1.0 - above) * (1.0 - top)


def soft_f1_loss(decided: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - soft micro-F1 of soft decisions `[n, c]` against multi-hot `targets`: 1 - 2 sum(a y) / (sum a + sum y)."""
    tp = (decided * targets).sum()
    return 1.0 - 2.0 * tp / (decided.sum() + targets.sum()).clamp(min=1e-6)
