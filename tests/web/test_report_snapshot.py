"""The `/evaluate` body, byte for byte: reports built from hand-made predictions and embeddings, mapped by
`replies.evaluated`, equal the stored JSON (field names, rounding, structure and the order of every list).

Regenerate `evaluate_reports.json` (`.venv/bin/python -m tests.web.test_report_snapshot`) only when the API is
meant to change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from app.ml.head import TenantHead
from app.ml.learner import HeadTensors
from app.ml.multilabel_report import labeled_set_report
from app.ml.tenant_report import LearningCurve, Scored, build_report
from app.services.insight import Evaluation
from app.web import replies

SNAPSHOT = Path(__file__).with_name("evaluate_reports.json")
LABELS = ["billing", "card_arrival", "exchange_rate", "refund", "lonely"]
COUNTS = [6, 4, 3, 5, 1]
# held-out predictions: (true, predicted) per scored example; `lonely` has one example and is never held out
PREDICTIONS = [(0, 0)] * 6 + [(1, 1)] * 3 + [(1, 2)] + [(2, 2), (2, 1), (2, 2)] + [(3, 3)] * 3 + [(3, 0)] * 2
FOLD_THRESHOLDS = [0.31, 0.35, None, 0.28, 0.4]


def _probabilities(predicted: list[int], n_labels: int) -> torch.Tensor:
    """Each row puts 0.55..0.73 on its prediction and spreads the rest evenly."""
    top = torch.tensor([0.55 + 0.02 * (i % 10) for i in range(len(predicted))])
    rows = ((1 - top) / (n_labels - 1)).unsqueeze(1).repeat(1, n_labels)
    rows[torch.arange(len(predicted)), torch.tensor(predicted)] = top
    return rows


def _support(targets: list[int], dim: int = 8) -> torch.Tensor:
    """One direction per label, nudged per example; two examples are then made confusing on purpose."""
    x = torch.zeros(len(targets), dim)
    for i, y in enumerate(targets):
        x[i, y] = 1.0
        x[i, 5 + i % 3] = 0.3
        x[i, (y + 1) % 5] = 0.02 * i
    return x


def single_label(method: str) -> dict[str, Any]:
    targets = [y for y, _ in PREDICTIONS]
    predicted = [p for _, p in PREDICTIONS]
    texts = [f"{LABELS[y]} text {i}" for i, y in enumerate(targets)]
    n = len(targets)
    scored = Scored(
        texts=texts,
        targets=torch.tensor(targets),
        probabilities=_probabilities(predicted, len(LABELS)),
        oos_scores=torch.tensor([0.1 + (0.15 + 0.037 * i) % 0.8 for i in range(n)]),
        thresholds=[FOLD_THRESHOLDS[i % 5] for i in range(n)] if method == "cross_validation" else [0.3] * n,
        not_evaluable=[4] if method == "cross_validation" else [],
        n_folds=5 if method == "cross_validation" else 0,
        curve=LearningCurve(4.5, 3.6, 2.7, accuracy=14 / 18, reduced_accuracy=0.6111)
        if method == "cross_validation"
        else None,
    )
    support_targets = [y for y in range(len(LABELS)) for _ in range(COUNTS[y])]
    support_texts = [f"support {i}" for i in range(len(support_targets))]
    x = _support(support_targets)
    x[0] = x[14] + 0.05  # filed under billing, looks like refund: a suspected mislabel
    x[9] = x[6] * 1.01  # exchange_rate copy of a card_arrival text: a near-duplicate
    report = build_report(scored, LABELS, COUNTS, x, support_targets, support_texts, method)
    return _reply(report)


def single_label_sparse() -> dict[str, Any]:
    """51 labels: the confusion matrix is sent as its diagonal and the non-zero cells."""
    labels = [f"l{y:02d}" for y in range(51)]
    targets = [y for y in range(51) for _ in range(2)]
    predicted = targets[:]
    for i, wrong in ((0, 7), (3, 7), (40, 2), (101, 0)):
        predicted[i] = wrong
    scored = Scored(
        texts=[f"t{i}" for i in range(len(targets))],
        targets=torch.tensor(targets),
        probabilities=_probabilities(predicted, 51),
        oos_scores=torch.full((len(targets),), 0.45),
        thresholds=[0.33] * len(targets),
        n_folds=2,
    )
    x = F.one_hot(torch.tensor(targets), 64).float()
    report = build_report(scored, labels, [2] * 51, x, targets, scored.texts, "cross_validation")
    return _reply(report)


def single_label_not_evaluable() -> dict[str, Any]:
    """One example per label: nothing is held out."""
    labels = ["a", "b"]
    scored = Scored(
        texts=[],
        targets=torch.empty(0, dtype=torch.long),
        probabilities=torch.empty(0, 2),
        oos_scores=torch.empty(0),
        thresholds=[],
        not_evaluable=[0, 1],
    )
    x = torch.eye(2)
    return _reply(build_report(scored, labels, [1, 1], x, [0, 1], ["one", "two"], "cross_validation"))


def _multilabel_head() -> TenantHead:
    labels = ["billing", "bug", "feature"]
    head = HeadTensors(weight=torch.eye(3, 4), bias=torch.tensor([0.0, -0.1, 0.05]))
    return TenantHead.from_tensors(labels, head, 5.0, torch.eye(3, 4), None, torch.tensor([0.6, 0.55, 0.7]))


def multi_label(n_test: int) -> dict[str, Any]:
    test = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.2],
            [0.1, 0.8, 0.05, 0.1],
            [0.5, 0.6, 0.0, 0.0],
            [0.0, 0.0, 0.3, 0.9],
            [0.2, 0.04, 0.7, 0.0],
            [0.08, 0.3, 0.1, 0.5],
            [0.7, 0.0, 0.4, 0.1],
        ]
    )[:n_test]
    truth = torch.tensor(
        [[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.float
    )[:n_test]
    support = torch.tensor(
        [[1, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]],
        dtype=torch.float,
    )
    return _reply(labeled_set_report(_multilabel_head(), test, truth, support))


def _reply(report: Any) -> dict[str, Any]:
    evaluation = Evaluation("acme-support", 3, False, report, {"load": 1.5, "total": 2.0})
    return replies.evaluated(evaluation).model_dump(mode="json")


def replies_now() -> dict[str, dict[str, Any]]:
    return {
        "single_label_cross_validation": single_label("cross_validation"),
        "single_label_test_set": single_label("test_set"),
        "single_label_sparse_confusion": single_label_sparse(),
        "single_label_not_evaluable": single_label_not_evaluable(),
        "multi_label_test_set": multi_label(7),
        "multi_label_not_evaluable": multi_label(0),
    }


def test_every_report_reply_matches_the_snapshot() -> None:
    expected = json.loads(SNAPSHOT.read_text())
    now = replies_now()
    assert set(now) == set(expected)
    for case, body in now.items():
        assert json.dumps(body, sort_keys=False) == json.dumps(expected[case], sort_keys=False), case


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(replies_now(), indent=1) + "\n")
