"""A 95 % interval for the accuracy of a tenant's served model, from its cross-validated predictions.

Wilson's interval treats the n held-out predictions as n independent trials of one fixed classifier. Cross-
validation is not that: each fold's classifier is fitted on fewer examples than the served one (a bias, corrected
by the learning-curve projection, `LearningCurve.projected`), and which examples a label happened to get moves
all of that label's predictions together. So the interval here is centred on a projection and its width adds up
three parts:

1. the held-out accuracy's sampling error, with labels as clusters: the design effect of the between-label
   variance of per-label accuracy (never below 1) shrinks the effective number of trials of a Wilson interval;
2. the projection's sampling error: the full and the thinned fits score the same rows, so the variance of their
   difference comes from the rows that exactly one of them gets right (`LearningCurve.discordant`);
3. the projection's model error: one log-linear step along the learning curve overshot the served model on the
   sets it was checked on (BANKING77 train, CLINC150 val: never a test split), so the centre takes `GAIN_SHARE`
   of that step and the step's model error has a standard deviation of `BIAS_SHARE` of it.

Parts 2 and 3 add to the Wilson half-widths in quadrature. Pure Python: no service imports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from app.ml.tenant_report_types import LearningCurve

Z95 = 1.959964
GAIN_SHARE = 0.5  # share of the learning curve's step that the centre takes (chosen on non-test data)
BIAS_SHARE = 0.5  # sd of the projection's model error, as a share of that step (chosen on non-test data)


def wilson_interval(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (0..1, always holding the proportion); (0, 1) without trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # p itself despite rounding


def design_effect(correct: Sequence[int], scored: Sequence[int]) -> float:
    """Variance of the pooled accuracy with labels resampled as clusters over its binomial variance (>= 1).

    `correct[y]` of `scored[y]` held-out rows of label y right; labels without scored rows are ignored.
    """
    pairs = [(c, n) for c, n in zip(correct, scored, strict=True) if n > 0]
    total = sum(n for _, n in pairs)
    if len(pairs) < 2 or total == 0:
        return 1.0
    p = sum(c for c, _ in pairs) / total
    binomial = p * (1 - p) / total
    if binomial <= 0:
        return 1.0
    clustered = len(pairs) / (len(pairs) - 1) * sum((c - p * n) ** 2 for c, n in pairs) / total**2
    return max(1.0, clustered / binomial)


def projection(curve: LearningCurve, hits: int, trials: int, gain_share: float = GAIN_SHARE) -> float:
    """The held-out accuracy plus `gain_share` of the learning curve's step to the full support set
    (`LearningCurve.projected`), never above the Wilson upper end of the held-out accuracy (57 of 60 right never
    projects to 100 %)."""
    p = hits / trials if trials else curve.accuracy
    return min(p + gain_share * (curve.projected() - curve.accuracy), wilson_interval(hits, trials)[1])


def projection_sd(
    curve: LearningCurve, trials: int, gain_share: float = GAIN_SHARE, bias_share: float = BIAS_SHARE
) -> float:
    """Standard deviation of the projection's gain over the held-out accuracy: its sampling error (the rows the
    full and the thinned fits disagree on) and its model error (`bias_share` of the whole step)."""
    if trials <= 0 or not curve.full_per_label > curve.train_per_label > curve.reduced_per_label > 0:
        return 0.0
    ratio = math.log(curve.full_per_label / curve.train_per_label) / math.log(
        curve.train_per_label / curve.reduced_per_label
    )
    difference = curve.accuracy - curve.reduced_accuracy
    sampling = (gain_share * ratio) ** 2 * max(0.0, curve.discordant - difference * difference) / trials
    return math.sqrt(sampling + (bias_share * (curve.projected() - curve.accuracy)) ** 2)


def cross_validated_interval(
    correct: Sequence[int],
    scored: Sequence[int],
    curve: LearningCurve | None,
    z: float = Z95,
    gain_share: float = GAIN_SHARE,
    bias_share: float = BIAS_SHARE,
) -> tuple[float, float]:
    """95 % interval of the served model's accuracy from per-label held-out counts (see the module docstring)."""
    hits, trials = sum(correct), sum(scored)
    if trials == 0:
        return 0.0, 1.0
    p = hits / trials
    effective = trials / design_effect(correct, scored)
    low, high = wilson_interval(p * effective, effective, z)
    if curve is None:
        return low, high
    centre = projection(curve, hits, trials, gain_share)
    extra = (z * projection_sd(curve, trials, gain_share, bias_share)) ** 2
    return (
        max(0.0, min(centre, centre - math.sqrt((p - low) ** 2 + extra))),
        min(1.0, max(centre, centre + math.sqrt((high - p) ** 2 + extra))),
    )
