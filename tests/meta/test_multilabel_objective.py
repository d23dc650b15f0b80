"""The multi-label meta-objective judges the decision `/adapt` serves: same thresholds, same top-label rule."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from app.meta.multilabel import episode_decision, served_rule_loss
from app.ml.learner import InnerLoopParams
from app.ml.tenant_fit import fit_multilabel
from app.ml.thresholds import Decision


def _task(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    centers = F.normalize(torch.randn(4, 16, generator=gen), dim=-1)
    targets = torch.zeros(32, 4)
    targets[torch.arange(32), torch.arange(32) % 4] = 1.0
    targets[::3, 1] = 1.0
    return F.normalize(targets @ centers + 0.4 * torch.randn(32, 16, generator=gen), dim=-1), targets


def test_episode_decision_is_the_served_decision() -> None:
    x, y = _task(0)
    inner = InnerLoopParams.constant(20, 0.1, 20.0)
    learnable = InnerLoopParams(20, inner.lr_weight.requires_grad_(), inner.lr_bias, inner.log_scale)
    decision = episode_decision(x, y, learnable)
    head = fit_multilabel(x, y, [f"l{i}" for i in range(4)], inner)
    assert head.thresholds is not None
    torch.testing.assert_close(decision.thresholds, head.thresholds)
    assert decision.min_labels == head.min_labels
    y_with_negative = y.clone()
    y_with_negative[0] = 0.0
    assert episode_decision(x, y_with_negative, inner).min_labels == 0


def test_served_rule_loss_rewards_the_true_labels_and_differs_with_the_top_label_rule() -> None:
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    thresholds = torch.full((3,), 0.9)
    right, wrong = 8 * (2 * targets - 1), 8 * (1 - 2 * targets)
    for min_labels in (0, 1):
        rule = Decision(thresholds, min_labels)
        assert float(served_rule_loss(right, targets, rule)) < 0.1 < 0.9 < float(served_rule_loss(wrong, targets, rule))
    low = torch.full((2, 3), -1.0) + 0.5 * targets  # every score under the thresholds; the true label on top
    assert float(served_rule_loss(low, targets, Decision(thresholds, 1))) < float(
        served_rule_loss(low, targets, Decision(thresholds, 0))
    )
