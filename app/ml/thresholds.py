"""Per-label decision thresholds of a multi-label head, fitted on its own support set by cross-validation.

1. Folds: examples taken rarest label first, each put in the fold holding the fewest positives of its
   labels (then the smallest; none over ceil(n / folds)): a greedy iterative stratification that spreads every label's
   positives over the folds. Seeded, so a support set always gets the same folds.
2. Out-of-fold scores: for each fold, the inner loop fits on the other folds and scores the held-out
   examples. A (example, label) score counts only when the training folds held a positive of the label.
3. Per label, the threshold on a grid that maximises the label's F1 on its out-of-fold scores (ties: the
   mean of the tied thresholds); a pooled threshold maximises micro-F1 over every label's scores.
4. Few examples: t = (k * t_label + m * t_pooled) / (k + m), with k the label's scored positives and m
   `prior_strength`; a label with fewer than `min_positives` scored positives takes t_pooled.
5. The decision (`fit_decision`): when every support example carries a label, the rule "each text's top label
   applies too" (`min_labels = 1`, `app.ml.multilabel_decision`) is fitted as well, its thresholds chosen with
   the top labels already counted, and kept when its out-of-fold micro-F1 is at least the plain rule's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from app.ml.multilabel_decision import applies, top_label_mask


@dataclass(frozen=True)
class ThresholdRule:
    folds: int = 5
    prior_strength: float = 4.0
    min_positives: int = 2
    default: float = 0.5  # when no score could be held out at all (e.g. one example per label)
    grid_step: float = 0.025


FoldScorer = Callable[[torch.Tensor], torch.Tensor]  # fold id per example [n] -> each example's held-out probs [n, c]


def fold_ids(targets: torch.Tensor, folds: int, seed: int = 0) -> torch.Tensor:
    """Fold index per example `[n]` for multi-hot `targets` `[n, c]` (greedy iterative stratification)."""
    n = targets.shape[0]
    counts = targets.sum(dim=0)
    rarity = torch.where(targets > 0, counts.unsqueeze(0), torch.full_like(targets, float("inf"))).amin(dim=1)
    tie_break = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    order = sorted(range(n), key=lambda i: (float(rarity[i]), int(tie_break[i])))
    in_fold = torch.zeros(folds, targets.shape[1])
    sizes = [0] * folds
    capacity = -(-n // folds)  # ceil(n / folds)
    ids = torch.empty(n, dtype=torch.long)
    for i in order:
        positives = in_fold[:, targets[i] > 0].sum(dim=1).tolist()
        open_folds = [f for f in range(folds) if sizes[f] < capacity]
        fold = min(open_folds, key=lambda f: (positives[f], sizes[f], f))
        ids[i] = fold
        in_fold[fold] += targets[i]
        sizes[fold] += 1
    return ids


class OutOfFold(NamedTuple):
    scores: torch.Tensor  # [n, c] each example's probabilities under the head of the folds without it
    valid: torch.Tensor  # [n, c] bool: the label had a positive outside the example's fold
    ids: torch.Tensor  # [n] fold of each example


def out_of_fold_scores(targets: torch.Tensor, folds: int, score: FoldScorer) -> OutOfFold:
    """Held-out probabilities `[n, c]`, the mask of those that count (label seen positive in training) and the folds.

    `score(ids)` fits one head per fold on the examples outside it and returns each example's probabilities
    under its own fold's head. With fewer than 2 examples nothing can be held out (all invalid)."""
    n, c = targets.shape
    if n < 2:
        return OutOfFold(torch.zeros(n, c), torch.zeros(n, c, dtype=torch.bool), torch.zeros(n, dtype=torch.long))
    ids = fold_ids(targets, min(folds, n))
    scores = score(ids).float()
    total = targets.sum(dim=0)
    in_fold = torch.zeros(int(ids.max()) + 1, c).index_add_(0, ids, targets.float())
    valid = (total.unsqueeze(0) - in_fold[ids]) > 0  # the label has a positive outside the example's fold
    return OutOfFold(scores, valid, ids)


class Decision(NamedTuple):
    thresholds: torch.Tensor  # [c] a label applies when its score reaches this
    min_labels: int  # 1: each text's top label applies as well; 0: none need apply


def _best_threshold(scores: torch.Tensor, truth: torch.Tensor, grid: torch.Tensor, forced: torch.Tensor) -> float:
    """Grid threshold with the highest F1 (mean of the tied ones) for flat `scores` and 0/1 `truth`, the entries
    in bool `forced` predicted whatever the threshold."""
    predicted = (scores.unsqueeze(0) >= grid.unsqueeze(1)) | forced.unsqueeze(0)  # [g, m]
    positive = truth.bool().unsqueeze(0)
    tp = (predicted & positive).sum(dim=1).float()
    wrong = (predicted ^ positive).sum(dim=1).float()  # false positives + false negatives
    f1 = 2 * tp / (2 * tp + wrong).clamp(min=1)
    best = f1 == f1.max()
    return float(grid[best].mean())


def fit_thresholds(
    scores: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor,
    rule: ThresholdRule,
    forced: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-label thresholds `[c]` from out-of-fold `scores`, multi-hot `targets` and the `valid` mask; entries in
    bool `forced` `[n, c]` (the top labels under `min_labels = 1`) count as predicted whatever the threshold."""
    c = targets.shape[1]
    grid = torch.arange(rule.grid_step, 1.0, rule.grid_step)
    if not bool(valid.any()):
        return torch.full((c,), rule.default)
    forced = torch.zeros_like(valid) if forced is None else forced
    pooled = _best_threshold(scores[valid], targets[valid], grid, forced[valid])
    thresholds = torch.full((c,), pooled)
    for label in range(c):
        mask = valid[:, label]
        k = int(targets[mask, label].sum())
        if k < rule.min_positives:
            continue
        own = _best_threshold(scores[mask, label], targets[mask, label], grid, forced[mask, label])
        thresholds[label] = (k * own + rule.prior_strength * pooled) / (k + rule.prior_strength)
    return thresholds


def micro_f1(predicted: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> float:
    """Micro-F1 of bool `predicted` against multi-hot `targets` over the `valid` entries."""
    predicted, truth = predicted & valid, targets.bool() & valid
    tp = float((predicted & truth).sum())
    wrong = float((predicted ^ truth).sum())
    return 2 * tp / max(2 * tp + wrong, 1.0)


def fit_decision(scores: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, rule: ThresholdRule) -> Decision:
    """The served decision from out-of-fold `scores` (see the module's step 5)."""
    plain = Decision(fit_thresholds(scores, targets, valid, rule), 0)
    if targets.shape[1] < 2 or not bool(valid.any()) or not bool((targets.sum(dim=1) > 0).all()):
        return plain
    forced = top_label_mask(scores)
    top = Decision(fit_thresholds(scores, targets, valid, rule, forced), 1)
    f1 = {d.min_labels: micro_f1(applies(scores, d.thresholds, d.min_labels), targets, valid) for d in (plain, top)}
    return top if f1[1] >= f1[0] else plain
