"""Which unlabeled texts to label next: uncertain under the current head AND spread over the embedding space.

Uncertainty is `1 - margin`: single-label, the top probability minus the runner-up's; multi-label, the smallest
distance of a label's probability to that label's threshold (the decision nearest to flipping). Diversity is
greedy k-center over cosine distance, seeded with the labeled support set: each next pick maximises
`uncertainty * distance to the nearest labeled or already picked text`, so the picks are uncertain texts in
regions the support set does not cover yet, not k paraphrases of the same confusing one. Pure PyTorch: no
service imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from app.ml.head import TenantHead

FAR = 0.5  # cosine distance to every labeled text above which a pick is "far from the labeled examples"
UNSURE_MARGIN = 0.2


@dataclass
class Suggestion:
    index: int  # position in the pool
    predicted: str
    score: float
    runner_up: str | None
    margin: float
    distance: float  # cosine distance to the nearest labeled (or earlier picked) text
    reason: str


def suggest(
    head: TenantHead, pool: torch.Tensor, support: torch.Tensor, k: int, uncertainty_weight: float = 1.0
) -> list[Suggestion]:
    """`k` pool rows (embeddings `[n, dim]`) to label next, in pick order; `support`: the labeled embeddings."""
    n = pool.shape[0]
    k = min(k, n)
    if k <= 0:
        return []
    probabilities = head.scores(pool)
    top = torch.topk(probabilities, min(2, probabilities.shape[1]), dim=-1)
    if head.thresholds is not None:  # multi-label: the runner-up is the label nearest its threshold
        gaps = (probabilities - head.thresholds).abs()
        margin, nearest_label = gaps.min(dim=-1)
        top = torch.return_types.topk((top.values, torch.stack([top.indices[:, 0], nearest_label], dim=1)))
    else:
        second = top.values[:, 1] if top.values.shape[1] > 1 else torch.zeros(n)
        margin = top.values[:, 0] - second
    uncertainty = (1.0 - margin).clamp(min=1e-6) ** uncertainty_weight
    x = F.normalize(pool.float(), dim=-1)
    if support.numel():
        nearest = 1.0 - (x @ F.normalize(support.float(), dim=-1).T).max(dim=-1).values
    else:
        nearest = torch.ones(n)
    nearest = nearest.clamp(min=0.0)
    chosen: list[Suggestion] = []
    taken = torch.zeros(n, dtype=torch.bool)
    for _ in range(k):
        gain = uncertainty * (nearest + 1e-3)
        gain[taken] = -1.0
        i = int(gain.argmax())
        taken[i] = True
        distance = float(nearest[i])
        chosen.append(_suggestion(head, i, top, margin, distance, probabilities))
        nearest = torch.minimum(nearest, (1.0 - x @ x[i]).clamp(min=0.0))
    return chosen


def _suggestion(
    head: TenantHead,
    i: int,
    top: torch.return_types.topk,
    margin: torch.Tensor,
    distance: float,
    probabilities: torch.Tensor,
) -> Suggestion:
    labels = head.labels
    predicted = labels[int(top.indices[i, 0])]
    runner = labels[int(top.indices[i, 1])] if top.indices.shape[1] > 1 else None
    m = float(margin[i])
    reasons = []
    if head.thresholds is not None and runner is not None:  # multi-label: the runner-up is the closest call
        j = int(top.indices[i, 1])
        if m < UNSURE_MARGIN:
            score, threshold = float(probabilities[i, j]), float(head.thresholds[j])
            reasons.append(f"unsure whether {runner} applies (score {score:.2f}, threshold {threshold:.2f})")
    elif m < UNSURE_MARGIN and runner is not None:
        reasons.append(f"unsure between {predicted} and {runner} (margin {m:.2f})")
    elif m < 0.5:
        reasons.append(f"low confidence in {predicted} ({float(top.values[i, 0]):.2f})")
    if distance >= FAR:
        reasons.append(f"unlike every labeled example (cosine distance {distance:.2f})")
    if not reasons:
        reasons.append(f"covers a region with few labeled examples (distance {distance:.2f})")
    return Suggestion(
        index=i,
        predicted=predicted,
        score=round(float(top.values[i, 0]), 4),
        runner_up=runner,
        margin=round(m, 4),
        distance=round(distance, 4),
        reason="; ".join(reasons),
    )
