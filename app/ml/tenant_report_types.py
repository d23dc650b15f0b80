"""What a single-label tenant's report holds (`app.ml.tenant_report` computes it): the held-out predictions it is
built from and the report's parts, at full precision. Plain dataclasses: rounding and field names are the HTTP
layer's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

Method = Literal["cross_validation", "test_set"]


@dataclass
class Scored:
    """Held-out predictions: for each scored example its text, true label index, probabilities, OOS score and the
    threshold of the head that scored it."""

    texts: list[str]
    targets: torch.Tensor  # [n] long
    probabilities: torch.Tensor  # [n, n_labels]
    oos_scores: torch.Tensor  # [n]
    thresholds: list[float | None]
    not_evaluable: list[int] = field(default_factory=list)  # label indices with too few examples to hold one out
    n_folds: int = 0
    curve: LearningCurve | None = None  # cross-validation only: accuracy one step down the learning curve


@dataclass
class LearningCurve:
    """Held-out accuracy with `train_per_label` examples per label, and again with `reduced_per_label` (each fold's
    training set thinned by as many examples per label as the fold holds out): the slope that projects the
    cross-validated accuracy to the full support set (`full_per_label`)."""

    full_per_label: float
    train_per_label: float
    reduced_per_label: float
    accuracy: float
    reduced_accuracy: float
    discordant: float = 0.0  # share of held-out rows that exactly one of the two fits gets right

    def projected(self) -> float:
        """Accuracy at `full_per_label`, extrapolated along log(examples per label); never below the CV value."""
        if not self.full_per_label > self.train_per_label > self.reduced_per_label > 0:
            return self.accuracy
        slope = (self.accuracy - self.reduced_accuracy) / math.log(self.train_per_label / self.reduced_per_label)
        gain = max(0.0, slope) * math.log(self.full_per_label / self.train_per_label)
        return min(1.0, self.accuracy + gain)


@dataclass(frozen=True)
class LabelMetrics:
    """One label's scores; `evaluable` False (too few examples to hold one out, or none scored): no metrics."""

    label: str
    examples: int  # in the support set
    support: int  # scored (held out, or in the test set)
    evaluable: bool
    precision: float | None
    recall: float | None
    f1: float | None
    corrections: int = 0  # of its examples, how many came from corrections (/feedback)


@dataclass(frozen=True)
class DenseConfusion:
    """`matrix[true][predicted]` over every label (up to `tenant_report.DENSE_CONFUSION_MAX_LABELS`)."""

    labels: list[str]
    matrix: list[list[int]]


@dataclass(frozen=True)
class ConfusionCell:
    true: str
    predicted: str
    count: int


@dataclass(frozen=True)
class SparseConfusion:
    """Above `tenant_report.DENSE_CONFUSION_MAX_LABELS`: the diagonal and the non-zero off-diagonal cells, most
    frequent first."""

    labels: list[str]
    diagonal: list[int]
    cells: list[ConfusionCell]


@dataclass(frozen=True)
class ConfusedPair:
    """Scored examples of `true` predicted as `predicted`: how many, their share of `true`'s, a few texts."""

    true: str
    predicted: str
    count: int
    rate: float
    examples: list[str]


@dataclass(frozen=True)
class LabelNeed:
    """A label that needs examples, and why."""

    label: str
    examples: int
    recall: float | None
    confused_with: str | None
    reasons: list[str]


@dataclass(frozen=True)
class SuspectedMislabel:
    """A support example closer to another label's prototype than to its own label's (computed without it)."""

    text: str
    label: str
    nearest_label: str
    own_similarity: float
    nearest_similarity: float
    margin: float


@dataclass(frozen=True)
class LabeledText:
    text: str
    label: str


@dataclass(frozen=True)
class NearDuplicate:
    """Two support texts under different labels with cosine `similarity`."""

    similarity: float
    a: LabeledText
    b: LabeledText


@dataclass(frozen=True)
class OosPoint:
    """In-scope examples accepted, rejected, and accepted and right at one out-of-scope threshold (`tenant`: the
    mean of the heads' thresholds, each example judged by its own head's)."""

    threshold: float
    rule: Literal["tenant", "fixed"]
    in_scope_recall: float
    false_rejection: float
    accuracy: float


@dataclass(frozen=True)
class SingleLabelReport:
    """A single-label tenant's report (see `app.ml.tenant_report`); the metrics are None when nothing was scored."""

    method: Method
    n_folds: int
    n_labels: int
    n_examples: int  # in the support set
    n_evaluated: int  # predictions scored
    accuracy: float | None
    accuracy_interval: tuple[float, float] | None  # 95 % interval of the served model's accuracy
    projected_accuracy: float | None  # cross-validation only
    learning_curve: LearningCurve | None  # cross-validation only; its projection is `projected_accuracy`
    macro_f1: float | None
    ece: float | None
    mean_confidence: float | None
    not_evaluable: list[str]
    per_label: list[LabelMetrics]
    confusion: DenseConfusion | SparseConfusion
    confused_pairs: list[ConfusedPair]
    labels_needing_examples: list[LabelNeed]
    suspected_mislabels: list[SuspectedMislabel]
    near_duplicates: list[NearDuplicate]
    oos_tradeoff: list[OosPoint]

    @property
    def evaluable(self) -> bool:
        return self.n_evaluated > 0
