"""Out-of-scope detection: cosine to the nearest class prototype, thresholded per tenant.

The threshold comes from the tenant's own support set: each example's cosine to its class prototype
computed *without* it (leave-one-out), and a low quantile of those scores. Texts less similar to
every prototype than that are out of scope.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from app.ml.learner import class_prototypes


def normalized_prototypes(embeddings: torch.Tensor, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Unit-norm class means, `[n_classes, dim]`."""
    return F.normalize(class_prototypes(embeddings, targets, n_classes), dim=-1)


def leave_one_out_similarity(embeddings: torch.Tensor, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Cosine of each example to its class mean without it; only classes with >= 2 examples."""
    counts = torch.bincount(targets, minlength=n_classes).to(embeddings.dtype)
    sums = torch.zeros(n_classes, embeddings.shape[1], dtype=embeddings.dtype).index_add_(0, targets, embeddings)
    keep = counts[targets] >= 2
    if not keep.any():
        return embeddings.new_empty(0)
    others = (sums[targets[keep]] - embeddings[keep]) / (counts[targets[keep]] - 1).unsqueeze(1)
    return F.cosine_similarity(embeddings[keep], others, dim=-1)


def oos_threshold(
    embeddings: torch.Tensor, targets: torch.Tensor, n_classes: int, quantile: float, fallback: float | None
) -> float | None:
    """The `quantile` of leave-one-out similarities, or `fallback` when no class has two examples."""
    scores = leave_one_out_similarity(embeddings.float(), targets, n_classes)
    if scores.numel() == 0:
        return fallback
    return float(torch.quantile(scores, quantile))
