"""The unlabeled-texts decision: cross-validation with and without the pool, on tasks built to go either way."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from app.ml.learner import InnerLoopParams
from app.ml.unlabeled import choose_unlabeled, pool_too_small

PARAMS = InnerLoopParams.constant(50, 0.04, 10.0)


def _clusters(n_labels: int, per_label: int, spread: float, seed: int, dim: int = 16) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    centers = F.normalize(torch.randn(n_labels, dim, generator=gen), dim=-1)
    targets = torch.arange(n_labels).repeat_interleave(per_label)
    points = F.normalize(centers[targets] + spread * torch.randn(len(targets), dim, generator=gen), dim=-1)
    return points, targets, centers


def test_a_pool_drawn_from_the_labels_clusters_is_used() -> None:
    support, targets, _ = _clusters(6, 5, 0.45, seed=0)
    pool, _, _ = _clusters(6, 60, 0.45, seed=0)  # the same centres (same seed), fresh draws
    use, with_, without = choose_unlabeled(support, targets, len(targets), 6, pool[len(targets) :], PARAMS)
    assert use and with_ > without


def test_a_pool_of_one_label_is_not_used_when_it_lowers_accuracy() -> None:
    support, targets, centers = _clusters(6, 5, 0.45, seed=0)
    gen = torch.Generator().manual_seed(1)
    pool = F.normalize(centers[0] + 0.45 * torch.randn(300, 16, generator=gen), dim=-1)
    use, with_, without = choose_unlabeled(support, targets, len(targets), 6, pool, PARAMS)
    assert not use and with_ <= without


def test_rows_after_the_examples_always_train() -> None:
    # each description is a copy of an example: a held-out example always has its twin in training, so with the
    # descriptions training in every fold, cross-validation is exact (without them, noise this large errs)
    support, targets, _ = _clusters(6, 3, 1.0, seed=2)
    pool, _, _ = _clusters(6, 40, 1.0, seed=2)
    _, _, alone = choose_unlabeled(support, targets, len(targets), 6, pool, PARAMS)
    rows, row_targets = torch.cat([support, support]), torch.cat([targets, targets])
    _, _, without = choose_unlabeled(rows, row_targets, len(targets), 6, pool, PARAMS)
    assert alone < 1.0 and without == 1.0


def test_small_pools_are_not_tried() -> None:
    assert pool_too_small(99, 10) and not pool_too_small(100, 10)
