"""Out-of-scope rule: leave-one-out similarities and the per-tenant threshold."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from app.ml.head import TenantHead
from app.ml.learner import HeadTensors
from app.ml.ood import leave_one_out_similarity, normalized_prototypes, oos_threshold


def test_leave_one_out_matches_brute_force() -> None:
    torch.manual_seed(0)
    emb = F.normalize(torch.randn(9, 6), dim=-1)
    targets = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])  # class 3 has one example: skipped
    fast = leave_one_out_similarity(emb, targets, 4)
    slow = []
    for i in range(9):
        others = [j for j in range(9) if j != i and targets[j] == targets[i]]
        if others:
            slow.append(F.cosine_similarity(emb[i], emb[others].mean(0), dim=0))
    torch.testing.assert_close(fast, torch.stack(slow))


def test_threshold_is_a_quantile_or_the_fallback() -> None:
    torch.manual_seed(1)
    emb = F.normalize(torch.randn(8, 5), dim=-1)
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    scores = leave_one_out_similarity(emb, targets, 2)
    assert oos_threshold(emb, targets, 2, 0.0, None) == float(scores.min())
    one_shot = torch.tensor([0, 1])
    assert oos_threshold(emb[:2], one_shot, 2, 0.05, 0.3) == 0.3
    assert oos_threshold(emb[:2], one_shot, 2, 0.05, None) is None


def test_scores_are_nearest_prototype_cosines() -> None:
    torch.manual_seed(2)
    emb = F.normalize(torch.randn(6, 4), dim=-1)
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    protos = normalized_prototypes(emb, targets, 3)
    torch.testing.assert_close(protos.norm(dim=-1), torch.ones(3))
    head = TenantHead.from_tensors(["a", "b", "c"], HeadTensors(protos, torch.zeros(3)), 10.0, protos, 0.5)
    query = F.normalize(torch.randn(3, 4), dim=-1)
    expected = torch.stack([F.cosine_similarity(q.unsqueeze(0), protos).max() for q in query])
    torch.testing.assert_close(head.oos_scores(query), expected, atol=1e-2, rtol=0)  # int8 prototypes
