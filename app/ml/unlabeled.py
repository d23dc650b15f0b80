"""A tenant's unlabeled traffic as evidence: does fitting with it (TIM's information term) help this tenant?

`/adapt` fits single-label heads with the tenant's pool of unlabeled texts (`adapt_head(unlabeled=...)`) only when
cross-validation on its support set says so: the folds of `held_out.held_out_folds` (as the label-names decision
builds them) are fitted without and with the pool, and the pool is used when the held-out accuracy rises. A pool
smaller than `MIN_POOL_PER_LABEL` texts per label is not tried (on BANKING77's train split, 6 texts per label
lowered accuracy; 26 raised it). Pure PyTorch: no service imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from app.ml.held_out import held_out_folds, held_out_right
from app.ml.learner import InnerLoopParams, adapt_head
from app.ml.work import stop_if_cancelled

UnlabeledMode = Literal["auto", "off"]
UNLABELED_MODES: tuple[str, ...] = ("auto", "off")

MIN_POOL_PER_LABEL = 10


@dataclass(frozen=True)
class PoolChoice:
    """Whether a tenant's unlabeled texts shaped its head, and why."""

    mode: UnlabeledMode
    used: bool
    reason: str
    pool_size: int = 0  # unlabeled texts available to the fit
    cv_accuracy_with: float | None = None
    cv_accuracy_without: float | None = None


def pool_too_small(pool_size: int, n_labels: int) -> bool:
    """Fewer texts than the information term needs to help (`MIN_POOL_PER_LABEL` per label)."""
    return pool_size < MIN_POOL_PER_LABEL * n_labels


def choose_unlabeled(
    rows: torch.Tensor,
    targets: torch.Tensor,
    n_examples: int,
    n_labels: int,
    pool: torch.Tensor,
    inner: InnerLoopParams,
    seed: int = 0,
) -> tuple[bool, float, float]:
    """Cross-validated accuracy of the `/adapt` inner loop without and with the unlabeled `pool` `[m, d]`; the pool
    is used only when it raises it (a tie does not: the pool costs time).

    `rows` / `targets` `[n]`: the fit rows, the first `n_examples` of them the tenant's examples (held out in turn),
    the rest descriptions and names (always train). Every fold is fitted at once (`adapt_head` with `subsets`),
    once without the pool and once with it; scored by argmax.
    Returns (use, accuracy with, accuracy without).
    """
    stop_if_cancelled()
    folds = held_out_folds(targets, n_examples, n_labels, seed)
    scored = max(1, int(folds.held.sum()))
    accuracy = []
    for pooled in (None, pool):
        heads = adapt_head(rows, targets, n_labels, inner, differentiable=False, unlabeled=pooled, subsets=folds.train)
        accuracy.append(float(held_out_right(rows, targets, heads, folds.held).sum()) / scored)
    without, with_ = accuracy
    return with_ > without, with_, without
