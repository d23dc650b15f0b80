"""The inner loop: prototype init, exact SGD steps, differentiability switch, the information term."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from app.ml.learner import (
    InnerLoopParams,
    adapt_head,
    class_prototypes,
    head_logits,
    information_loss,
    prototype_head,
)


def _toy_task(seed: int = 0, n_way: int = 4, shots: int = 3, dim: int = 16):
    gen = torch.Generator().manual_seed(seed)
    centers = F.normalize(torch.randn(n_way, dim, generator=gen), dim=-1)
    targets = torch.arange(n_way).repeat_interleave(shots)
    noise = 0.6 * torch.randn(len(targets), dim, generator=gen)
    embeddings = F.normalize(centers[targets] + noise, dim=-1)
    return embeddings, targets, n_way


def test_prototype_head_ranks_like_nearest_prototype() -> None:
    emb, y, n = _toy_task()
    head = prototype_head(emb, y, n)
    protos = class_prototypes(emb, y, n)
    queries = F.normalize(torch.randn(20, emb.shape[1]), dim=-1)
    linear = head_logits(queries, head, 1.0)
    distance = -(torch.cdist(queries, protos) ** 2)
    # the linear form equals -||x-c||^2 up to the per-row constant ||x||^2 = 1
    torch.testing.assert_close(linear - 1.0, distance, atol=1e-5, rtol=1e-5)


def test_one_inner_step_equals_hand_computed_sgd() -> None:
    emb, y, n = _toy_task()
    lr, scale = 0.7, 8.0
    init = prototype_head(emb, y, n)
    adapted = adapt_head(emb, y, n, InnerLoopParams.constant(1, lr, scale), differentiable=False)

    # loss = n_classes * mean CE: d loss / d logits = n_classes * (softmax - onehot) / batch;
    # logits = scale * (x W^T + b)
    probs = torch.softmax(scale * (emb @ init.weight.T + init.bias), dim=-1)
    delta = n * (probs - F.one_hot(y, n).float()) / len(y)
    grad_w = scale * delta.T @ emb
    grad_b = scale * delta.sum(dim=0)
    torch.testing.assert_close(adapted.weight, init.weight - lr * grad_w, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(adapted.bias, init.bias - lr * grad_b, atol=1e-6, rtol=1e-5)


def test_inner_steps_lower_support_loss() -> None:
    emb, y, n = _toy_task(seed=3)
    losses = []
    for steps in (0, 5, 25):
        params = InnerLoopParams.constant(steps, 0.02, 10.0)
        head = adapt_head(emb, y, n, params, differentiable=False)
        losses.append(F.cross_entropy(head_logits(emb, head, 10.0), y).item())
    assert losses[0] > losses[1] > losses[2]


def test_non_differentiable_mode_returns_detached_tensors() -> None:
    emb, y, n = _toy_task()
    emb = emb.clone().requires_grad_()
    head = adapt_head(emb, y, n, InnerLoopParams.constant(3, 0.5, 10.0), differentiable=False)
    assert not head.weight.requires_grad and head.weight.grad_fn is None


def test_inference_tensors_are_accepted() -> None:
    emb, y, n = _toy_task()
    with torch.inference_mode():
        frozen = emb * 1.0
    head = adapt_head(frozen, y, n, InnerLoopParams.constant(2, 0.5, 10.0), differentiable=False)
    assert torch.isfinite(head.weight).all()


def test_differentiable_mode_reaches_embeddings_and_inner_params() -> None:
    emb, y, n = _toy_task()
    emb = emb.clone().requires_grad_()
    lr_weight = torch.full((emb.shape[1],), 0.5, requires_grad=True)  # Meta-SGD: one lr per dimension
    lr_bias = torch.tensor(0.5, requires_grad=True)
    log_scale = torch.tensor(10.0).log().requires_grad_()
    params = InnerLoopParams(3, lr_weight, lr_bias, log_scale)
    head = adapt_head(emb, y, n, params, differentiable=True)
    query_loss = F.cross_entropy(head_logits(emb.detach(), head, params.scale), y)
    query_loss.backward()
    for tensor in (emb, lr_weight, lr_bias, log_scale):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0


def test_zero_steps_is_the_prototype_head() -> None:
    emb, y, n = _toy_task()
    head = adapt_head(emb, y, n, InnerLoopParams.constant(0, 0.5, 10.0), differentiable=False)
    torch.testing.assert_close(head.weight, prototype_head(emb, y, n).weight)


def _at(degrees: list[float]) -> torch.Tensor:
    """Unit vectors at these angles (2-D)."""
    radians = torch.tensor(degrees) * math.pi / 180.0
    return torch.stack([radians.cos(), radians.sin()], dim=1)


def test_information_loss_by_hand() -> None:
    c = 4
    assert float(information_loss(torch.zeros(6, c))) == pytest.approx(0.0, abs=1e-6)  # unsure: H(Y|X) = H(Y)
    spread = 50.0 * torch.eye(c)  # each text sure of a different label: -c log c
    assert float(information_loss(spread)) == pytest.approx(-c * math.log(c), abs=1e-4)
    collapsed = 50.0 * F.one_hot(torch.zeros(c, dtype=torch.long), c).float()  # all sure of one label: 0
    assert float(information_loss(collapsed)) == pytest.approx(0.0, abs=1e-4)


def test_unlabeled_texts_move_the_boundary_into_the_gap_between_clusters() -> None:
    # support: one example per label (90 and 0 degrees); the prototype boundary is the diagonal (45 degrees), which
    # cuts the traffic cluster at 40-60 degrees. The information term moves it into the gap between the clusters.
    support, targets = _at([90.0, 0.0]), torch.tensor([0, 1])
    pool = _at([float(a) for a in range(0, 21, 2)] + [float(a) for a in range(40, 61, 2)])
    params = InnerLoopParams.constant(50, 0.1, 10.0)
    probe = _at([42.0])
    plain = adapt_head(support, targets, 2, params, differentiable=False)
    with_pool = adapt_head(support, targets, 2, params, differentiable=False, unlabeled=pool)
    assert int(head_logits(probe, plain, params.scale).argmax()) == 1
    assert int(head_logits(probe, with_pool, params.scale).argmax()) == 0
    no_pool = adapt_head(support, targets, 2, params, differentiable=False, unlabeled=pool[:0])
    torch.testing.assert_close(no_pool.weight, plain.weight)


@pytest.mark.parametrize(("with_norm", "with_pool"), [(False, False), (True, False), (False, True)])
def test_a_batch_of_subsets_fits_each_subsets_own_head(with_norm: bool, with_pool: bool) -> None:
    emb, y, n = _toy_task(seed=3)
    params = InnerLoopParams.constant(7, 0.3, 8.0)
    if with_norm:
        params.lr_weight, params.lr_norm = torch.linspace(0.1, 0.5, emb.shape[1]), torch.tensor(0.2)
    pool = _toy_task(seed=4, shots=5)[0] if with_pool else None
    subsets = torch.stack([torch.ones(len(y)), (torch.arange(len(y)) % 3 != 0).float()])
    batch = adapt_head(emb, y, n, params, differentiable=False, unlabeled=pool, subsets=subsets)
    assert batch.weight.shape == (2, n, emb.shape[1]) and batch.bias.shape == (2, n)
    for j, subset in enumerate(subsets.bool()):
        alone = adapt_head(emb[subset], y[subset], n, params, differentiable=False, unlabeled=pool)
        torch.testing.assert_close(batch.weight[j], alone.weight, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batch.bias[j], alone.bias, rtol=1e-4, atol=1e-5)
        if with_norm:
            assert batch.norm_gain is not None and alone.norm_gain is not None
            torch.testing.assert_close(batch.norm_gain[j], alone.norm_gain, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(head_logits(emb, batch, 8.0)[j], head_logits(emb, alone, 8.0), rtol=1e-4, atol=1e-4)
