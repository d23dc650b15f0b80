"""Multi-label maths: the one-vs-rest init, one BCE inner step by hand, thresholds, the head codec, the fit."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from app.meta.multilabel_data import MultiLabelRows, multi_hot, multilabel_metrics, sample_k_per_label
from app.ml.head import HeadDecodeError, TenantHead
from app.ml.learner import InnerLoopParams, adapt_head, head_logits, one_vs_rest_head
from app.ml.tenant_fit import fit_multilabel, fold_scores
from app.ml.thresholds import ThresholdRule, fit_thresholds, fold_ids, out_of_fold_scores


def _multilabel_task(seed: int = 0, n_labels: int = 4, n: int = 40, dim: int = 16):
    """Texts whose embedding is the normalised sum of their labels' centres plus noise (1-2 labels each)."""
    gen = torch.Generator().manual_seed(seed)
    centers = F.normalize(torch.randn(n_labels, dim, generator=gen), dim=-1)
    targets = torch.zeros(n, n_labels)
    for i in range(n):
        targets[i, i % n_labels] = 1.0
        if i % 3 == 0:
            targets[i, (i + 1) % n_labels] = 1.0
    noise = 0.3 * torch.randn(n, dim, generator=gen)
    return F.normalize(targets @ centers + noise, dim=-1), targets, centers


def test_one_vs_rest_init_is_the_distance_difference() -> None:
    emb, y, _ = _multilabel_task()
    head = one_vs_rest_head(emb, y)
    queries = F.normalize(torch.randn(10, emb.shape[1]), dim=-1)
    for label in range(y.shape[1]):
        p = emb[y[:, label] > 0].mean(dim=0)
        q = emb[y[:, label] == 0].mean(dim=0)
        expected = ((queries - q) ** 2).sum(dim=1) - ((queries - p) ** 2).sum(dim=1)
        torch.testing.assert_close(head_logits(queries, head, 1.0)[:, label], expected, atol=1e-5, rtol=1e-5)


def test_label_without_positives_never_applies_and_without_negatives_uses_the_origin() -> None:
    emb, y, _ = _multilabel_task()
    y = torch.cat([y, torch.zeros(len(y), 1), torch.ones(len(y), 1)], dim=1)
    head = one_vs_rest_head(emb, y)
    assert torch.equal(head.weight[-2], torch.zeros(emb.shape[1])) and float(head.bias[-2]) == -1.0
    p = emb.mean(dim=0)
    torch.testing.assert_close(head.weight[-1], 2 * p)
    torch.testing.assert_close(head.bias[-1], -(p * p).sum())


def test_one_inner_step_equals_hand_computed_bce_step() -> None:
    emb, y, _ = _multilabel_task()
    n, c = y.shape
    lr, scale = 0.3, 6.0
    init = one_vs_rest_head(emb, y)
    adapted = adapt_head(emb, y, c, InnerLoopParams.constant(1, lr, scale), differentiable=False)
    # loss = c * mean over n*c entries of BCE(sigmoid(z), y) = sum over labels, mean over examples:
    # d loss / d z = (sigmoid(z) - y) / n, with z = scale * (x W^T + b)
    z = scale * (emb @ init.weight.T + init.bias)
    delta = (torch.sigmoid(z) - y) / n
    torch.testing.assert_close(adapted.weight, init.weight - lr * scale * delta.T @ emb, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(adapted.bias, init.bias - lr * scale * delta.sum(dim=0), atol=1e-6, rtol=1e-5)


def test_multilabel_inner_loop_is_differentiable_for_meta_training() -> None:
    emb, y, _ = _multilabel_task()
    params = InnerLoopParams.constant(3, 0.2, 5.0)
    params.log_scale.requires_grad_()
    params.lr_weight.requires_grad_()
    head = adapt_head(emb, y, y.shape[1], params, differentiable=True)
    F.binary_cross_entropy_with_logits(head_logits(emb, head, params.scale), y).backward()
    assert params.lr_weight.grad is not None and params.log_scale.grad is not None


def test_folds_spread_every_labels_positives() -> None:
    _, y, _ = _multilabel_task(n=40)
    ids = fold_ids(y, 5)
    sizes = torch.bincount(ids).tolist()
    assert len(sizes) == 5 and max(sizes) - min(sizes) <= 1
    for label in range(y.shape[1]):
        assert len(set(ids[y[:, label] > 0].tolist())) == 5  # 10+ positives reach every fold
    assert torch.equal(ids, fold_ids(y, 5))  # seeded


def test_thresholds_separate_clean_scores_and_shrink_for_few_positives() -> None:
    truth = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    scores = torch.tensor([[0.9, 0.6], [0.8, 0.45], [0.7, 0.1], [0.3, 0.5], [0.2, 0.05], [0.1, 0.02]])
    valid = torch.ones_like(truth, dtype=torch.bool)
    rule = ThresholdRule(prior_strength=0.0, min_positives=1)
    thresholds = fit_thresholds(scores, truth, valid, rule)
    assert ((scores[:, 0] >= thresholds[0]) == truth[:, 0].bool()).all()  # label 0: separable, F1 = 1
    assert 0.5 < float(thresholds[1]) <= 0.6  # label 1: only the 0.6 positive above, 0.5 negative below
    shrunk = fit_thresholds(scores, truth, valid, ThresholdRule(prior_strength=4.0, min_positives=2))
    pooled = fit_thresholds(scores, truth, valid, ThresholdRule(prior_strength=1e9))
    assert float(shrunk[1]) == pytest.approx(float(pooled[1]))  # one positive: the pooled threshold
    k = 3
    assert float(shrunk[0]) == pytest.approx((k * float(thresholds[0]) + 4 * float(pooled[0])) / (k + 4))
    none_valid = torch.zeros_like(valid)
    assert fit_thresholds(scores, truth, none_valid, rule).tolist() == [0.5, 0.5]


def test_out_of_fold_scores_mark_labels_unseen_in_training() -> None:
    y = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]])  # label 1 has one positive: unseen when it is held out
    scores, valid, ids = out_of_fold_scores(y, 5, lambda ids: torch.full((len(ids), 2), 0.5))
    assert ids.tolist().count(int(ids[4])) == 1
    assert scores.shape == (5, 2)
    assert not bool(valid[4, 1]) and bool(valid[4, 0])


def test_folds_in_one_wide_inner_loop_equal_separate_fits() -> None:
    emb, y, _ = _multilabel_task(n=30)
    params = InnerLoopParams.constant(10, 0.2, 8.0)
    ids = fold_ids(y, 3)
    together = fold_scores(emb, y, ids, params)
    for fold in range(3):
        train, held = ids != fold, ids == fold
        alone = adapt_head(emb[train], y[train], y.shape[1], params, differentiable=False)
        expected = torch.sigmoid(head_logits(emb[held], alone, params.scale))
        torch.testing.assert_close(together[held], expected, atol=1e-5, rtol=1e-4)


def test_fit_multilabel_recovers_label_sets() -> None:
    emb, y, centers = _multilabel_task(n=60)
    labels = ["a", "b", "c", "d"]
    head = fit_multilabel(emb, y, labels, InnerLoopParams.constant(30, 0.1, 10.0))
    assert head.multi_label and head.thresholds is not None and head.oos_threshold is None
    test_emb, test_y, _ = _multilabel_task(seed=0, n=60)  # same centres, fresh noise below
    gen = torch.Generator().manual_seed(9)
    test_emb = F.normalize(test_y @ centers + 0.3 * torch.randn(test_emb.shape, generator=gen), dim=-1)
    predicted = head.scores(test_emb) >= head.thresholds
    assert multilabel_metrics(predicted.float(), test_y)["micro_f1"] > 0.85


def test_multilabel_head_round_trips_and_rejects_tampering() -> None:
    emb, y, _ = _multilabel_task()
    head = fit_multilabel(emb, y, ["a", "b", "c", "d"], InnerLoopParams.constant(5, 0.1, 10.0))
    again = TenantHead.from_bytes(head.to_bytes())
    assert again.task == "multi_label" and torch.equal(again.thresholds, head.thresholds)
    torch.testing.assert_close(again.scores(emb), head.scores(emb))
    scores = head.scores(emb)
    assert not torch.allclose(scores.sum(dim=1), torch.ones(len(emb)))  # sigmoids, not a softmax
    bad = TenantHead(**{**head.__dict__, "thresholds": torch.tensor([0.5, 1.5, 0.5, 0.5])})
    with pytest.raises(HeadDecodeError):
        TenantHead.from_bytes(bad.to_bytes())
    single = TenantHead(**{**head.__dict__, "thresholds": None})
    assert single.task == "single_label" and b"thresholds" not in single.to_bytes()


def test_k_per_label_sampler_keeps_label_sets_and_reaches_k() -> None:
    rows = MultiLabelRows(
        "toy",
        [f"t{i}" for i in range(30)],
        [("a", "b") if i % 3 == 0 else ("a",) if i % 3 == 1 else ("c",) for i in range(30)],
    )
    sample = sample_k_per_label(rows, 4, seed=1)
    counts = multi_hot(sample.label_sets, ["a", "b", "c"]).sum(dim=0).tolist()
    assert all(count >= 4 for count in counts)
    assert all(
        rows.label_sets[rows.texts.index(t)] == labels
        for t, labels in zip(sample.texts, sample.label_sets, strict=False)
    )
    assert sample.texts == sample_k_per_label(rows, 4, seed=1).texts


def test_metrics_micro_macro_exact() -> None:
    truth = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    predicted = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    m = multilabel_metrics(predicted, truth)
    assert m["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1))
    assert m["macro_f1"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["exact_match"] == pytest.approx(0.5)
