"""The multi-label decision rule: thresholds plus the top-label rule, its fit, its smooth form and its codec."""

from __future__ import annotations

import itertools

import pytest
import torch

from app.ml.head import HeadDecodeError, TenantHead
from app.ml.learner import HeadTensors
from app.ml.multilabel_decision import applies, soft_decision, soft_f1_loss, top_label_mask
from app.ml.thresholds import ThresholdRule, fit_decision, fit_thresholds, micro_f1


def _reference_applies(scores: torch.Tensor, thresholds: torch.Tensor, min_labels: int) -> torch.Tensor:
    out = torch.zeros_like(scores, dtype=torch.bool)
    for i, row in enumerate(scores.tolist()):
        best = max(range(len(row)), key=lambda j: (row[j], -j))
        for j, value in enumerate(row):
            out[i, j] = value >= float(thresholds[j]) or (min_labels == 1 and j == best)
    return out


def test_applies_matches_a_loop_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    scores, thresholds = 0.9 * torch.rand(30, 5, generator=gen), torch.rand(5, generator=gen)
    for min_labels in (0, 1):
        assert torch.equal(applies(scores, thresholds, min_labels), _reference_applies(scores, thresholds, min_labels))
    high = torch.full((5,), 0.99)
    assert not applies(scores, high, 0).any()
    assert torch.equal(applies(scores, high, 1).sum(dim=1), torch.ones(30, dtype=torch.long))  # exactly the top one


def test_forced_thresholds_match_a_brute_force_f1_search() -> None:
    """With the top labels forced, each label's threshold maximises its F1 counting the forced entries as
    predicted (a label with many positives, so the pooled prior barely matters: checked against the pure search)."""
    gen = torch.Generator().manual_seed(1)
    scores = torch.rand(60, 3, generator=gen)
    targets = (torch.rand(60, 3, generator=gen) < 0.4).float()
    forced = top_label_mask(scores)
    valid = torch.ones_like(targets, dtype=torch.bool)
    rule = ThresholdRule(prior_strength=0.0)
    thresholds = fit_thresholds(scores, targets, valid, rule, forced)
    grid = torch.arange(rule.grid_step, 1.0, rule.grid_step)
    for label in range(3):
        f1s = []
        for t in grid.tolist():
            predicted = (scores[:, label] >= t) | forced[:, label]
            truth = targets[:, label].bool()
            tp, wrong = int((predicted & truth).sum()), int((predicted ^ truth).sum())
            f1s.append(2 * tp / max(2 * tp + wrong, 1))
        best = max(f1s)
        expected = sum(t for t, f in zip(grid.tolist(), f1s, strict=True) if f == best) / f1s.count(best)
        assert float(thresholds[label]) == pytest.approx(expected, abs=1e-6)


def test_fit_decision_takes_the_top_label_rule_only_when_every_example_has_a_label_and_it_helps() -> None:
    # every text's true label is its top score, but the scores are low: thresholds alone miss many
    gen = torch.Generator().manual_seed(2)
    n, c = 40, 4
    targets = torch.zeros(n, c)
    targets[torch.arange(n), torch.arange(n) % c] = 1.0
    scores = 0.05 + 0.3 * torch.rand(n, c, generator=gen) * (1 - targets) + targets * (0.36 + 0.3 * torch.rand(n, c))
    scores = torch.where(targets > 0, scores, scores * 0.5 + 0.2 * torch.rand(n, c, generator=gen))
    valid = torch.ones_like(targets, dtype=torch.bool)
    rule = ThresholdRule()
    decision = fit_decision(scores, targets, valid, rule)
    plain = fit_thresholds(scores, targets, valid, rule)
    assert decision.min_labels == 1
    assert micro_f1(applies(scores, decision.thresholds, 1), targets, valid) >= micro_f1(
        applies(scores, plain, 0), targets, valid
    )
    # a support example without a label: the tenant has out-of-scope texts, no text is forced to a label
    with_negative = targets.clone()
    with_negative[0] = 0.0
    assert fit_decision(scores, with_negative, valid, rule).min_labels == 0
    # one label only: the rule would always apply it
    assert fit_decision(scores[:, :1], torch.ones(n, 1), valid[:, :1], rule).min_labels == 0


def test_soft_decision_tends_to_the_served_rule_and_soft_f1_is_micro_f1_on_hard_decisions() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(50, 4, generator=gen)
    thresholds = torch.tensor([0.3, 0.5, 0.7, 0.9])
    probs = torch.sigmoid(logits)
    targets = (torch.rand(50, 4, generator=gen) < 0.3).float()
    away = ((probs - thresholds).abs() > 0.05).all(dim=1)  # rows with no score at a threshold's edge
    hard = applies(probs, thresholds, 0)
    soft = soft_decision(logits, thresholds, 0, sharpness=2000.0)
    torch.testing.assert_close(soft[away], hard[away].float(), atol=1e-3, rtol=0)
    # the top-label part: softmax over sharp logits (a clear top label) is the top-label indicator
    sharp = 40 * logits
    top2 = sharp.topk(2, dim=1).values
    clear = away & (top2[:, 0] - top2[:, 1] > 20)
    soft_top = soft_decision(sharp, thresholds, 1, sharpness=2000.0)
    hard_top = applies(torch.sigmoid(sharp), thresholds, 1)
    assert int(clear.sum()) > 10
    torch.testing.assert_close(soft_top[clear], hard_top[clear].float(), atol=1e-3, rtol=0)
    expected = 1.0 - micro_f1(hard, targets, torch.ones_like(hard))
    assert float(soft_f1_loss(hard.float(), targets)) == pytest.approx(expected, abs=1e-6)


def test_soft_f1_loss_has_gradients_for_meta_training() -> None:
    logits = torch.randn(8, 3, requires_grad=True)
    targets = torch.zeros(8, 3)
    targets[:, 0] = 1.0
    loss = soft_f1_loss(soft_decision(logits, torch.full((3,), 0.5), 1), targets)
    loss.backward()
    assert logits.grad is not None and bool(logits.grad.abs().sum() > 0)
    assert bool(logits.grad[:, 0].le(0).all())  # raising the true label's logit lowers the loss


def _head(min_labels: int) -> TenantHead:
    tensors = HeadTensors(torch.randn(3, 8), torch.randn(3))
    return TenantHead.from_tensors(
        ["a", "b", "c"], tensors, 10.0, torch.randn(3, 8), None, torch.tensor([0.9, 0.95, 0.99]), min_labels
    )


def test_head_serves_the_top_label_rule_and_keeps_it_through_its_bytes() -> None:
    head = _head(1)
    decoded = TenantHead.from_bytes(head.to_bytes())
    assert decoded.min_labels == 1
    scores = torch.tensor([[0.2, 0.3, 0.1], [0.96, 0.97, 0.1]])
    assert decoded.applying(scores).tolist() == [[False, True, False], [True, True, False]]
    assert decoded.applying(scores, override=0.5).tolist() == [[False, False, False], [True, True, False]]
    assert not _head(0).applying(scores)[0].any()
    # a head without the rule keeps its old bytes (no new metadata): old stored heads decode as before
    plain = _head(0)
    assert b"min_labels" not in plain.to_bytes()
    assert TenantHead.from_bytes(plain.to_bytes()).min_labels == 0


@pytest.mark.parametrize("bad", ["2", "-1", "x"])
def test_head_rejects_a_bad_min_labels(bad: str) -> None:
    data = _head(1).to_bytes().replace(b'"min_labels":"1"', f'"min_labels":"{bad}"'.encode())
    with pytest.raises(HeadDecodeError):
        TenantHead.from_bytes(data)


def test_top_label_mask_picks_the_first_of_tied_maxima() -> None:
    scores = torch.tensor([[0.5, 0.5, 0.1], [0.1, 0.2, 0.3]])
    assert top_label_mask(scores).tolist() == [[True, False, False], [False, False, True]]
    assert list(itertools.chain.from_iterable(top_label_mask(torch.rand(4, 1)).tolist())) == [True] * 4
