"""Every algorithm learns on a few episodes; MAML's meta-gradient matches finite differences."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch.nn import functional as F

from app.meta.algorithms import ALGORITHMS, build_algorithm, supervised_contrastive_loss
from app.meta.backbone import Backbone
from app.meta.data import load_jsonl, sample_episode
from app.ml.learner import InnerLoopParams, adapt_head, head_logits


def _episodes(path, n: int):
    data = load_jsonl(path)
    return [sample_episode(data, 5, 2, 3, random.Random(seed)) for seed in range(n)]


def _query_loss(backbone, algorithm, episodes) -> float:
    total = 0.0
    for ep in episodes:
        emb = backbone(ep.support_texts + ep.query_texts)
        n = len(ep.support_texts)
        loss, _ = algorithm.loss(emb[:n], torch.tensor(ep.support_targets), emb[n:], torch.tensor(ep.query_targets), 5)
        total += loss
    return total / len(episodes)


@pytest.mark.parametrize("name", [*ALGORITHMS, "fo-protomaml", "metasgd+norm"])
def test_algorithm_lowers_query_loss(name: str, make_tiny, clinc_sample) -> None:
    torch.manual_seed(0)
    encoder = make_tiny()
    backbone = Backbone(encoder, 1)
    # FOMAML's zero-init head with 2 small steps gives a first-order direction that does not descend
    # on this random encoder (support and query move together); a longer inner loop does.
    options = {"steps": 5, "lr": 2.0, "scale": 5.0} if name == "fomaml" else {"steps": 2, "lr": 0.5, "scale": 5.0}
    if name.endswith("+norm"):  # the inner loop adapts head + last-layer norm
        name, options = name.removesuffix("+norm"), options | {"adapt_norm": True}
    algorithm = build_algorithm(name, encoder.dim, options)
    params = backbone.trainable_parameters() + [p for p in algorithm.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=3e-3)
    episodes = _episodes(clinc_sample, 2)
    before = _query_loss(backbone, algorithm, episodes).item()
    for _ in range(8):
        optimizer.zero_grad()
        _query_loss(backbone, algorithm, episodes).backward()
        optimizer.step()
    after = _query_loss(backbone, algorithm, episodes).item()
    assert after < before - 1e-3, (name, before, after)


def _maml_objective(support, targets, query, query_targets, lr, init: str) -> torch.Tensor:
    params = InnerLoopParams(3, lr, torch.tensor(0.4, dtype=torch.float64), torch.tensor(1.5, dtype=torch.float64))
    head = adapt_head(support, targets, 3, params, differentiable=True, init=init)
    return F.cross_entropy(head_logits(query, head, params.scale), query_targets)


@pytest.mark.parametrize("init", ["zero", "prototype"])
def test_maml_meta_gradient_matches_finite_differences(init: str) -> None:
    gen = torch.Generator().manual_seed(0)
    support = torch.randn(6, 4, generator=gen, dtype=torch.float64).requires_grad_()
    query = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    targets, query_targets = torch.arange(3).repeat(2), torch.arange(3).repeat(3)
    lr = torch.full((4,), 0.7, dtype=torch.float64).requires_grad_()  # Meta-SGD: per-dimension rates
    loss = _maml_objective(support, targets, query, query_targets, lr, init)
    grad_support, grad_lr = torch.autograd.grad(loss, [support, lr])

    def numeric(tensor: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(tensor)
        eps = 1e-6
        for i in range(tensor.numel()):
            with torch.no_grad():
                flat = tensor.view(-1)
                flat[i] += eps
                up = _maml_objective(support, targets, query, query_targets, lr, init)
                flat[i] -= 2 * eps
                down = _maml_objective(support, targets, query, query_targets, lr, init)
                flat[i] += eps
            out.view(-1)[i] = (up - down) / (2 * eps)
        return out

    # second-order terms matter: the first-order gradient alone would not match
    torch.testing.assert_close(grad_support, numeric(support), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad_lr, numeric(lr), atol=1e-6, rtol=1e-5)


def test_inner_loop_can_adapt_the_last_layer_norm() -> None:
    """Head + last-layer norm: the norm moves from identity, the support loss falls, and the
    meta-gradient reaches the norm's learning rate."""
    torch.manual_seed(4)
    support = F.normalize(torch.randn(12, 6), dim=-1)
    targets = torch.arange(3).repeat(4)
    lr_norm = torch.tensor(0.5, requires_grad=True)
    params = InnerLoopParams(10, torch.tensor(0.04), torch.tensor(0.04), torch.tensor(5.0).log(), lr_norm)
    head = adapt_head(support, targets, 3, params, differentiable=True)
    assert head.norm_gain is not None and head.norm_shift is not None
    assert not torch.allclose(head.norm_gain, torch.ones(6)) and not torch.allclose(head.norm_shift, torch.zeros(6))
    head_only = adapt_head(support, targets, 3, params.with_steps(0), differentiable=False)
    assert head_only.norm_gain is not None and torch.equal(head_only.norm_gain, torch.ones(6))
    loss = F.cross_entropy(head_logits(support, head, params.scale), targets)
    start = F.cross_entropy(head_logits(support, head_only, params.scale), targets)
    assert loss < start
    loss.backward()
    assert lr_norm.grad is not None and lr_norm.grad.abs() > 0


def test_untrained_meta_network_is_protonet_and_its_generator_learns() -> None:
    torch.manual_seed(0)
    support = F.normalize(torch.randn(12, 16), dim=-1)
    targets = torch.arange(4).repeat_interleave(3)
    query = F.normalize(torch.randn(8, 16), dim=-1)
    query_targets = torch.arange(4).repeat(2)
    metanet = build_algorithm("metanet", 16, {"scale": 5.0, "hidden": 8})
    protonet = build_algorithm("protonet", 16, {"scale": 5.0})
    torch.testing.assert_close(metanet.logits(support, targets, query, 4), protonet.logits(support, targets, query, 4))
    with_steps = build_algorithm("metanet", 16, {"scale": 5.0, "hidden": 8, "inner_steps": 3, "lr": 0.1})
    protomaml = build_algorithm("protomaml", 16, {"scale": 5.0, "steps": 3, "lr": 0.1})
    torch.testing.assert_close(
        with_steps.logits(support, targets, query, 4),
        protomaml.logits(support, targets, query, 4),
        atol=1e-5,
        rtol=1e-5,
    )
    loss, _ = with_steps.loss(support, targets, query, query_targets, 4)
    loss.backward()
    assert with_steps.generator[2].weight.grad is not None and with_steps.generator[2].weight.grad.abs().sum() > 0
    assert with_steps.log_lr.grad is not None  # through the inner steps taken from the written head


def test_supervised_contrastive_loss_matches_its_formula_and_prefers_tight_labels() -> None:
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [0.9, 0.2], [-0.2, 1.0], [0.1, 0.8]]), dim=-1)
    y = torch.tensor([0, 0, 1, 1])
    t = 0.5
    expected = []
    for i in range(4):  # the docstring's L, term by term
        others = [a for a in range(4) if a != i]
        denominator = sum(math.exp(float(z[i] @ z[a]) / t) for a in others)
        positives = [p for p in others if y[p] == y[i]]
        expected.append(
            -sum(math.log(math.exp(float(z[i] @ z[p]) / t) / denominator) for p in positives) / len(positives)
        )
    loss = supervised_contrastive_loss(z, y, t)
    assert loss.item() == pytest.approx(sum(expected) / 4, rel=1e-5)
    assert supervised_contrastive_loss(z, torch.tensor([0, 1, 0, 1]), t) > loss  # mixed labels cost more


def test_supcon_trains_the_encoder_side_only_and_serves_through_the_protomaml_loop() -> None:
    algorithm = build_algorithm("supcon", 8, {"steps": 3, "lr": 0.04, "scale": 10.0, "temperature": 0.2})
    assert algorithm.exports_head and not any(p.requires_grad for p in algorithm.parameters())
    support = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1).requires_grad_()
    query = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    loss, accuracy = algorithm.loss(support, torch.tensor([0, 0, 1, 1, 2, 2]), query, torch.tensor([0, 1, 2, 0]), 3)
    loss.backward()
    assert support.grad is not None and 0.0 <= accuracy.item() <= 1.0
    assert algorithm.inner_params().steps == 3
