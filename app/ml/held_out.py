"""Cross-validation for the per-tenant evidence decisions (label names, unlabeled texts): which fit rows each fold
holds out and trains on, and the held-out accuracy of a batch of heads fitted on those folds.

A fit's rows are the tenant's examples, then rows that always train (descriptions, label names). At most
`CV_MAX_PER_LABEL` examples of each label take part (a seeded choice); they are dealt into the tenant report's
stratified folds (`tenant_report.stratified_folds`: a label with one example is never held out). Every fold's head
is fitted at once by `adapt_head(subsets=...)`. Pure PyTorch: no service imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from app.ml.learner import HeadTensors, head_logits
from app.ml.tenant_report import stratified_folds

CV_MAX_PER_LABEL = 10  # a decision cross-validates at most this many examples of each label


@dataclass(frozen=True)
class HeldOutFolds:
    held: torch.Tensor  # [k, n_rows] bool: the rows each fold holds out (examples only)
    train: torch.Tensor  # [k, n_rows] float 0/1: the rows each fold trains on

    def without(self, rows: torch.Tensor) -> torch.Tensor:
        """`train` with the bool `rows` `[n_rows]` trained on by no fold."""
        return self.train * (~rows).float()


def held_out_folds(targets: torch.Tensor, n_examples: int, n_labels: int, seed: int = 0) -> HeldOutFolds:
    """The folds over a fit's rows (`targets` `[n_rows]`, the first `n_examples` of them examples)."""
    examples = capped_per_label(targets[:n_examples].tolist(), CV_MAX_PER_LABEL, seed)
    folds, _, k = stratified_folds(targets[examples].tolist(), n_labels, seed)
    fold_of = torch.full((targets.shape[0],), -1, dtype=torch.long)
    fold_of[examples] = torch.tensor(folds, dtype=torch.long)
    fits = torch.zeros(targets.shape[0], dtype=torch.bool)  # the chosen examples and every always-training row
    fits[examples] = True
    fits[n_examples:] = True
    held = torch.stack([fold_of == f for f in range(k)]) if k else torch.zeros(0, targets.shape[0], dtype=torch.bool)
    return HeldOutFolds(held, (fits.unsqueeze(0) & ~held).float())


def held_out_right(rows: torch.Tensor, targets: torch.Tensor, heads: HeadTensors, held: torch.Tensor) -> torch.Tensor:
    """How many of its `held` rows (`[b, n_rows]`) each head of a batch of b labels right (`[b]`), by argmax (which
    a served temperature and an out-of-scope threshold do not change)."""
    predicted = head_logits(rows, heads, 1.0).argmax(-1)  # [b, n_rows]
    return ((predicted == targets.unsqueeze(0)) & held).sum(dim=1)


def can_cross_validate(targets: list[int]) -> bool:
    """Some label holds two examples: cross-validation has something to hold out."""
    seen: set[int] = set()
    for y in targets:
        if y in seen:
            return True
        seen.add(y)
    return False


def capped_per_label(targets: list[int], per_label: int, seed: int) -> torch.Tensor:
    """Indices of at most `per_label` examples of each label (the first ones of a seeded shuffle), in order."""
    generator = torch.Generator().manual_seed(seed)
    taken: dict[int, int] = {}
    keep: list[int] = []
    for i in torch.randperm(len(targets), generator=generator).tolist():
        if taken.get(targets[i], 0) < per_label:
            taken[targets[i]] = taken.get(targets[i], 0) + 1
            keep.append(i)
    return torch.tensor(sorted(keep), dtype=torch.long)
