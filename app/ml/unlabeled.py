"""A tenant's unlabeled traffic as evidence: does fitting with it (TIM's information term) help this tenant?

`/adapt` fits single-label heads with the tenant's pool of unlabeled texts (`adapt_head(unlabeled=...)`) only when
cross-validation on its support set says so: stratified folds over at most `CV_MAX_PER_LABEL` examples of each label
(as the label-names decision builds them) are fitted without and with the pool, and the pool is used when the
held-out accuracy rises. A pool smaller than `MIN_POOL_PER_LABEL` texts per
label is not tried (on BANKING77's train split, 6 texts per label lowered accuracy; 26 raised it). Pure PyTorch: no
service imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from app.ml.label_names import capped_per_label
from app.ml.learner import InnerLoopParams, adapt_head, head_logits
from app.ml.tenant_report import stratified_folds
from app.ml.work import stop_if_cancelled

UnlabeledMode = Literal["auto", "off"]
UNLABELED_MODES: tuple[str, ...] = ("auto", "off")

MIN_POOL_PER_LABEL = 10
CV_MAX_PER_LABEL = 10  # the decision cross-validates at most this many examples of each label


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

    `rows` / `targets` `[n]`: the fit rows, the first `n_examples` of them the tenant's examples (held out in turn,
    at most `CV_MAX_PER_LABEL` per label), the rest descriptions and names (always train). Every fold is fitted
    at once (`adapt_head` with `subsets`), once without the pool and once with it; scored by argmax.
    Returns (use, accuracy with, accuracy without).
    """
    stop_if_cancelled()
    examples = capped_per_label(targets[:n_examples].tolist(), CV_MAX_PER_LABEL, seed)
    folds, _, k = stratified_folds(targets[examples].tolist(), n_labels, seed)
    fold_of = torch.full((rows.shape[0],), -1, dtype=torch.long)
    fold_of[examples] = torch.tensor(folds, dtype=torch.long)
    fits = torch.zeros(rows.shape[0], dtype=torch.bool)  # the capped examples and every description or name row
    fits[examples] = True
    fits[n_examples:] = True
    held = torch.stack([fold_of == f for f in range(k)])  # [k, n]
    subsets = (fits.unsqueeze(0) & ~held).float()
    scored = max(1, int(held.sum()))
    accuracy = []
    for pooled in (None, pool):
        heads = adapt_head(rows, targets, n_labels, inner, differentiable=False, unlabeled=pooled, subsets=subsets)
        predicted = head_logits(rows, heads, inner.scale).argmax(-1)  # [k, n]
        accuracy.append(int(((predicted == targets.unsqueeze(0)) & held).sum()) / scored)
    without, with_ = accuracy
    return with_ > without, with_, without
