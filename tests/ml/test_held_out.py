"""The evidence decisions' folds: only examples are held out (at most 10 per label, never a label's only one),
the rows after the examples train in every fold, and each head is scored on its own fold's rows."""

from __future__ import annotations

import torch

from app.ml.held_out import CV_MAX_PER_LABEL, held_out_folds, held_out_right
from app.ml.learner import HeadTensors


def test_folds_hold_out_examples_only_and_always_train_the_rest() -> None:
    examples = [0] * 25 + [1] * 3 + [2]  # label 0 over the cap, label 2 with a single example
    targets = torch.tensor([*examples, 0, 1, 2])  # then one description per label
    folds = held_out_folds(targets, len(examples), 3)
    n = len(examples)
    assert folds.held.shape == folds.train.shape == (5, n + 3)
    assert not folds.held[:, n:].any() and bool((folds.train[:, n:] == 1).all())
    assert int(folds.held.sum(dim=0).max()) == 1  # each example is held out at most once
    assert int(folds.held[:, :25].sum()) == CV_MAX_PER_LABEL and int(folds.held[:, 28].sum()) == 0
    chosen = folds.held.any(dim=0) | (folds.train[0] > 0)  # an example outside the cap never trains
    assert int(chosen[:25].sum()) == CV_MAX_PER_LABEL
    assert not bool((folds.train.bool() & folds.held).any())
    names = torch.arange(n + 3) >= n
    assert not folds.without(names)[:, n:].any() and torch.equal(folds.without(names)[:, :n], folds.train[:, :n])


def test_each_head_is_scored_on_its_own_held_rows() -> None:
    rows = torch.eye(2)
    heads = HeadTensors(torch.stack([torch.eye(2), -torch.eye(2)]), torch.zeros(2, 2))  # right, then wrong
    held = torch.tensor([[True, True], [True, False]])
    assert held_out_right(rows, torch.tensor([0, 1]), heads, held).tolist() == [2, 0]
