"""How good is a tenant's classifier, and what to fix: cross-validation through the `/adapt` maths.

`cross_validate` refits the head (`tenant_fit.fit_embedded`: inner loop, served temperature, OOS rule) on k
stratified folds of the support set's cached embeddings; `evaluate_head` scores a fitted head on a labeled test
set. Both yield `Scored` predictions that `build_report` turns into a `SingleLabelReport`: the accuracy of those
predictions with a 95 % interval of the served model's accuracy (`accuracy_interval`; cross-validation: centred
on the projection to the full support set, also reported apart), macro-F1, per-label precision / recall / F1,
the confusion matrix, the most confused pairs, the labels most in need of examples, suspected mislabels,
near-duplicates under different labels, the out-of-scope trade-off and ECE. Values keep full precision; rounding
and field names are the HTTP layer's.
The report's dataclasses live in `tenant_report_types`. Pure PyTorch: no service imports.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Literal

import torch
from torch.nn import functional as F

from app.ml.accuracy_interval import cross_validated_interval, projection, wilson_interval
from app.ml.calibration import FITTED, TemperatureRule, expected_calibration_error
from app.ml.head import TenantHead
from app.ml.learner import InnerLoopParams
from app.ml.ood import leave_one_out_similarity, normalized_prototypes
from app.ml.tenant_fit import OosRule, fit_embedded
from app.ml.tenant_report_types import (
    ConfusedPair,
    ConfusionCell,
    DenseConfusion,
    LabeledText,
    LabelMetrics,
    LabelNeed,
    LearningCurve,
    Method,
    NearDuplicate,
    OosPoint,
    Scored,
    SingleLabelReport,
    SparseConfusion,
    SuspectedMislabel,
)

MAX_FOLDS = 5
DENSE_CONFUSION_MAX_LABELS = 50
NEAR_DUPLICATE_COSINE = 0.95
OOS_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6)
LISTED = 20  # entries of each ranked list
EXAMPLE_TEXTS = 3
LOW_RECALL = 0.8
FEW_EXAMPLES = 5


def stratified_folds(targets: list[int], n_labels: int, seed: int = 0) -> tuple[list[int], list[int], int]:
    """Fold of each example (-1: never held out), the not-evaluable labels and the number of folds.

    k = min(5, largest count): each label with >= 2 examples deals its shuffled examples round-robin from a
    rotating start, so a label with fewer than k examples is left out one example at a time (leave-one-out)
    and always keeps one in training; a label with a single example is never held out (not evaluable).
    """
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(targets):
        by_label[y].append(i)
    evaluable = [y for y in range(n_labels) if len(by_label[y]) >= 2]
    not_evaluable = [y for y in range(n_labels) if len(by_label[y]) < 2]
    if not evaluable:
        return [-1] * len(targets), not_evaluable, 0
    k = min(MAX_FOLDS, max(len(by_label[y]) for y in evaluable))
    rng = random.Random(seed)
    folds = [-1] * len(targets)
    start = 0
    for y in evaluable:
        members = by_label[y][:]
        rng.shuffle(members)
        for j, i in enumerate(members):
            folds[i] = (start + j) % k
        start = (start + len(members)) % k
    return folds, not_evaluable, k


def cross_validate(
    embeddings: torch.Tensor,
    targets: list[int],
    labels: list[str],
    texts: list[str],
    inner: InnerLoopParams,
    oos_rule: OosRule | None = None,
    temperature: TemperatureRule = FITTED,
    extra: tuple[torch.Tensor, list[int]] | None = None,
    seed: int = 0,
    learning_curve: bool = True,
    unlabeled: torch.Tensor | None = None,
) -> Scored:
    """Stratified k-fold CV of the `/adapt` fit; `extra` (embeddings, targets) always train (label descriptions),
    and every fit takes the embedded `unlabeled` texts when given (a version fitted with them).

    With `learning_curve`, each fold is fitted a second time on a training set thinned by as many examples per
    label as the fold holds out (at least one kept), scoring the same held-out rows: `Scored.curve`.
    """
    folds, not_evaluable, k = stratified_folds(targets, len(labels), seed)
    target_tensor = torch.tensor(targets, dtype=torch.long)
    fold_tensor = torch.tensor(folds, dtype=torch.long)
    held_rows: list[torch.Tensor] = []
    probabilities, oos_scores, thresholds = [], [], []
    reduced_correct: list[torch.Tensor] = []
    sizes: list[tuple[float, float, int]] = []  # per fold: train and reduced examples per evaluable label, held
    rng = random.Random(seed + 1)
    evaluable = [y for y in range(len(labels)) if y not in set(not_evaluable)]
    for fold in range(k):
        held = (fold_tensor == fold).nonzero().flatten()
        if held.numel() == 0:
            continue
        train = (fold_tensor != fold).nonzero().flatten()
        head = fit_embedded(
            *_with_extra(embeddings[train], target_tensor[train], extra),
            labels,
            inner,
            oos_rule,
            temperature,
            unlabeled,
        )
        probabilities.append(head.probabilities(embeddings[held]))
        oos_scores.append(head.oos_scores(embeddings[held]))
        thresholds += [head.oos_threshold] * held.numel()
        held_rows.append(held)
        if learning_curve and evaluable:
            thinned = _thinned(train.tolist(), held.tolist(), targets, rng)
            reduced = fit_embedded(
                *_with_extra(embeddings[thinned], target_tensor[thinned], extra),
                labels,
                inner,
                oos_rule,
                temperature,
                unlabeled,
            )
            reduced_correct.append(reduced.probabilities(embeddings[held]).argmax(-1) == target_tensor[held])
            train_counts = Counter(targets[i] for i in train.tolist())
            thinned_counts = Counter(targets[i] for i in thinned.tolist())
            sizes.append(
                (
                    sum(train_counts[y] for y in evaluable) / len(evaluable),
                    sum(thinned_counts[y] for y in evaluable) / len(evaluable),
                    held.numel(),
                )
            )
    rows = torch.cat(held_rows) if held_rows else torch.empty(0, dtype=torch.long)
    probability_rows = torch.cat(probabilities) if probabilities else torch.empty(0, len(labels))
    curve = None
    if reduced_correct:
        weight = sum(n for _, _, n in sizes)
        counts = Counter(targets)
        full_correct = probability_rows.argmax(-1) == target_tensor[rows]
        curve = LearningCurve(
            full_per_label=sum(counts[y] for y in evaluable) / len(evaluable),
            train_per_label=sum(t * n for t, _, n in sizes) / weight,
            reduced_per_label=sum(r * n for _, r, n in sizes) / weight,
            accuracy=float(full_correct.float().mean()),
            reduced_accuracy=float(torch.cat(reduced_correct).float().mean()),
            discordant=float((full_correct != torch.cat(reduced_correct)).float().mean()),
        )
    return Scored(
        texts=[texts[i] for i in rows.tolist()],
        targets=target_tensor[rows],
        probabilities=probability_rows,
        oos_scores=torch.cat(oos_scores) if oos_scores else torch.empty(0),
        thresholds=thresholds,
        not_evaluable=not_evaluable,
        n_folds=k,
        curve=curve,
    )


def _with_extra(
    x: torch.Tensor, y: torch.Tensor, extra: tuple[torch.Tensor, list[int]] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if extra is None or not extra[1]:
        return x, y
    return torch.cat([x, extra[0]]), torch.cat([y, torch.tensor(extra[1], dtype=torch.long)])


def _thinned(train: list[int], held: list[int], targets: list[int], rng: random.Random) -> torch.Tensor:
    """`train` without as many random examples of each label as `held` holds of it (keeping at least one)."""
    drop = Counter(targets[i] for i in held)
    by_label: dict[int, list[int]] = defaultdict(list)
    for i in train:
        by_label[targets[i]].append(i)
    kept: list[int] = []
    for y, members in by_label.items():
        n_drop = min(drop[y], len(members) - 1)
        kept += rng.sample(members, len(members) - n_drop) if n_drop > 0 else members
    return torch.tensor(sorted(kept), dtype=torch.long)


def evaluate_head(head: TenantHead, embeddings: torch.Tensor, targets: list[int], texts: list[str]) -> Scored:
    """A fitted head on a labeled test set (every label evaluable)."""
    return Scored(
        texts=list(texts),
        targets=torch.tensor(targets, dtype=torch.long),
        probabilities=head.probabilities(embeddings),
        oos_scores=head.oos_scores(embeddings),
        thresholds=[head.oos_threshold] * len(texts),
    )


def suspected_mislabels(
    embeddings: torch.Tensor, targets: list[int], labels: list[str], texts: list[str], limit: int = LISTED
) -> list[SuspectedMislabel]:
    """Examples whose nearest other label's prototype beats their own label's prototype computed without them."""
    if not targets:
        return []
    x = F.normalize(embeddings.float(), dim=-1)
    y = torch.tensor(targets, dtype=torch.long)
    n_labels = len(labels)
    counts = torch.bincount(y, minlength=n_labels)
    similarity = x @ normalized_prototypes(x, y, n_labels).T  # [n, labels]
    keep = counts[y] >= 2
    own = torch.full((len(targets),), float("nan"))
    own[keep] = leave_one_out_similarity(x, y, n_labels)  # own label's prototype without the example
    similarity[torch.arange(len(targets)), y] = float("-inf")
    present = counts > 0
    similarity[:, ~present] = float("-inf")
    best, nearest = similarity.max(dim=-1)
    margin = best - own
    found = (keep & (margin > 0)).nonzero().flatten().tolist()
    found.sort(key=lambda i: -float(margin[i]))
    return [
        SuspectedMislabel(
            text=texts[i],
            label=labels[targets[i]],
            nearest_label=labels[int(nearest[i])],
            own_similarity=float(own[i]),
            nearest_similarity=float(best[i]),
            margin=float(margin[i]),
        )
        for i in found[:limit]
    ]


def near_duplicates(
    embeddings: torch.Tensor,
    targets: list[int],
    labels: list[str],
    texts: list[str],
    threshold: float = NEAR_DUPLICATE_COSINE,
    limit: int = LISTED,
    block: int = 1024,
) -> list[NearDuplicate]:
    """Pairs of texts under different labels with cosine >= `threshold` (computed in blocks of rows)."""
    x = F.normalize(embeddings.float(), dim=-1)
    y = torch.tensor(targets, dtype=torch.long)
    found: list[tuple[float, int, int]] = []
    for start in range(0, len(targets), block):
        rows = x[start : start + block]
        similarity = rows @ x.T
        index = torch.arange(start, start + rows.shape[0]).unsqueeze(1)
        upper = torch.arange(len(targets)).unsqueeze(0) > index
        different = y[start : start + rows.shape[0]].unsqueeze(1) != y.unsqueeze(0)
        hits = ((similarity >= threshold) & upper & different).nonzero().tolist()
        found += [(float(similarity[r, c]), start + r, c) for r, c in hits]
    found.sort(key=lambda hit: -hit[0])
    return [
        NearDuplicate(
            similarity=sim,
            a=LabeledText(texts[i], labels[targets[i]]),
            b=LabeledText(texts[j], labels[targets[j]]),
        )
        for sim, i, j in found[:limit]
    ]


def _per_label(predicted: torch.Tensor, targets: torch.Tensor, n_labels: int) -> tuple[list, list, list, list]:
    tp = torch.zeros(n_labels)
    tp.index_add_(0, targets[predicted == targets], torch.ones(int((predicted == targets).sum())))
    predicted_count = torch.bincount(predicted, minlength=n_labels).float()
    support = torch.bincount(targets, minlength=n_labels).float()
    precision = torch.where(predicted_count > 0, tp / predicted_count.clamp(min=1), torch.zeros(n_labels))
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros(n_labels))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), 0.0)
    return precision.tolist(), recall.tolist(), f1.tolist(), support.long().tolist()


def _confusion(predicted: torch.Tensor, targets: torch.Tensor, n_labels: int) -> torch.Tensor:
    flat = targets * n_labels + predicted
    return torch.bincount(flat, minlength=n_labels * n_labels).reshape(n_labels, n_labels)


def oos_tradeoff(scored: Scored, thresholds: tuple[float, ...] = OOS_THRESHOLDS) -> list[OosPoint]:
    """In-scope recall and false rejection of held-out in-scope examples at the tenant's rule and fixed thresholds."""
    n = scored.oos_scores.numel()
    if n == 0:
        return []
    correct = scored.probabilities.argmax(dim=-1) == scored.targets
    rows: list[OosPoint] = []
    tenant = torch.tensor([-1.0 if t is None else t for t in scored.thresholds])
    points: list[tuple[Literal["tenant", "fixed"], float | None, torch.Tensor]] = [("tenant", None, tenant)]
    points += [("fixed", t, torch.full((n,), t)) for t in thresholds]
    for kind, value, limit in points:
        accepted = scored.oos_scores >= limit
        rows.append(
            OosPoint(
                threshold=float(tenant.mean()) if value is None else value,
                rule=kind,
                in_scope_recall=float(accepted.float().mean()),
                false_rejection=float((~accepted).float().mean()),
                accuracy=float((accepted & correct).float().mean()),
            )
        )
    return rows


def build_report(
    scored: Scored,
    labels: list[str],
    counts: list[int],
    support_embeddings: torch.Tensor,
    support_targets: list[int],
    support_texts: list[str],
    method: Method,
) -> SingleLabelReport:
    """The whole report (see the module docstring)."""
    n_labels = len(labels)
    n = scored.targets.numel()
    predicted = scored.probabilities.argmax(dim=-1) if n else torch.empty(0, dtype=torch.long)
    correct = int((predicted == scored.targets).sum()) if n else 0
    not_evaluable = set(scored.not_evaluable)
    precision, recall, f1, support = _per_label(predicted, scored.targets, n_labels)
    interval = accuracy_interval(scored, predicted, n_labels, method)
    projected = projection(scored.curve, correct, n) if scored.curve is not None and n else None
    per_label = [
        LabelMetrics(label, counts[y], support[y], False, None, None, None)
        if y in not_evaluable or support[y] == 0
        else LabelMetrics(label, counts[y], support[y], True, precision[y], recall[y], f1[y])
        for y, label in enumerate(labels)
    ]
    scored_f1 = [m.f1 for m in per_label if m.f1 is not None]
    confusion = _confusion(predicted, scored.targets, n_labels) if n else torch.zeros(n_labels, n_labels)
    pairs = _confused_pairs(confusion, scored, predicted, labels)
    return SingleLabelReport(
        method=method,
        n_folds=scored.n_folds,
        n_labels=n_labels,
        n_examples=sum(counts),
        n_evaluated=n,
        accuracy=correct / n if n else None,
        accuracy_interval=interval if n else None,
        projected_accuracy=projected,
        learning_curve=scored.curve if projected is not None else None,
        macro_f1=sum(scored_f1) / len(scored_f1) if scored_f1 else None,
        ece=expected_calibration_error(scored.probabilities, scored.targets) if n else None,
        mean_confidence=float(scored.probabilities.max(dim=-1).values.mean()) if n else None,
        not_evaluable=[labels[y] for y in sorted(not_evaluable)],
        per_label=per_label,
        confusion=_confusion_of(confusion, labels),
        confused_pairs=pairs,
        labels_needing_examples=_needing_examples(per_label, pairs),
        suspected_mislabels=suspected_mislabels(support_embeddings, support_targets, labels, support_texts),
        near_duplicates=near_duplicates(support_embeddings, support_targets, labels, support_texts),
        oos_tradeoff=oos_tradeoff(scored),
    )


def accuracy_interval(scored: Scored, predicted: torch.Tensor, n_labels: int, method: Method) -> tuple[float, float]:
    """95 % interval of the served model's accuracy: Wilson on a test set (one fixed classifier, independent
    rows); from cross-validation, `accuracy_interval.cross_validated_interval` (labels as clusters, the projection
    and its uncertainty)."""
    right = scored.targets[predicted == scored.targets]
    if method == "test_set":
        return wilson_interval(right.numel(), scored.targets.numel())
    correct = torch.bincount(right, minlength=n_labels).tolist()
    return cross_validated_interval(correct, torch.bincount(scored.targets, minlength=n_labels).tolist(), scored.curve)


def _confusion_of(confusion: torch.Tensor, labels: list[str]) -> DenseConfusion | SparseConfusion:
    if len(labels) <= DENSE_CONFUSION_MAX_LABELS:
        return DenseConfusion(labels=labels, matrix=confusion.long().tolist())
    off = confusion.clone()
    off.fill_diagonal_(0)
    cells = off.nonzero().tolist()
    cells.sort(key=lambda rc: -int(off[rc[0], rc[1]]))
    return SparseConfusion(
        labels=labels,
        diagonal=[int(confusion[y, y]) for y in range(len(labels))],
        cells=[ConfusionCell(labels[r], labels[c], int(off[r, c])) for r, c in cells],
    )


def _confused_pairs(
    confusion: torch.Tensor, scored: Scored, predicted: torch.Tensor, labels: list[str]
) -> list[ConfusedPair]:
    off = confusion.clone()
    off.fill_diagonal_(0)
    cells = off.nonzero().tolist()
    cells.sort(key=lambda rc: -int(off[rc[0], rc[1]]))
    texts_by_cell: dict[tuple[int, int], list[str]] = defaultdict(list)
    for text, y, p in zip(scored.texts, scored.targets.tolist(), predicted.tolist(), strict=True):
        if y != p and len(texts_by_cell[(y, p)]) < EXAMPLE_TEXTS:
            texts_by_cell[(y, p)].append(text)
    return [
        ConfusedPair(
            true=labels[r],
            predicted=labels[c],
            count=int(off[r, c]),
            rate=int(off[r, c]) / max(1, int(confusion[r].sum())),
            examples=texts_by_cell[(r, c)],
        )
        for r, c in cells[:LISTED]
    ]


def _needing_examples(per_label: list[LabelMetrics], pairs: list[ConfusedPair]) -> list[LabelNeed]:
    """Labels ranked by need: not evaluable, low recall, few examples; each with why (and whom it is confused with).
    Equal needs keep the labels' order."""
    partner: dict[str, str] = {}
    for pair in pairs:
        partner.setdefault(pair.true, pair.predicted)
    ranked: list[tuple[float, LabelNeed]] = []
    for entry in per_label:
        reasons = []
        recall = entry.recall if entry.recall is not None else 0.0
        if not entry.evaluable:
            reasons.append(f"only {entry.examples} example(s): cannot be cross-validated")
        elif recall < LOW_RECALL:
            reasons.append(f"low recall {recall:.2f}")
        if entry.examples < FEW_EXAMPLES and entry.evaluable:
            reasons.append(f"few examples ({entry.examples})")
        if entry.label in partner:
            reasons.append(f"confused with {partner[entry.label]}")
        if not reasons or (len(reasons) == 1 and entry.label in partner and recall >= LOW_RECALL):
            continue
        need = (2.0 if not entry.evaluable else 1.0 - recall) + 1.0 / (1 + entry.examples)
        ranked.append((need, LabelNeed(entry.label, entry.examples, entry.recall, partner.get(entry.label), reasons)))
    ranked.sort(key=lambda item: -round(item[0], 6))  # float32 noise never reorders equal needs
    return [need for _, need in ranked[:LISTED]]


def with_corrections(report: SingleLabelReport, corrections: dict[str, int]) -> SingleLabelReport:
    """`report` with each label's count of examples that came from corrections."""
    per_label = [replace(entry, corrections=corrections.get(entry.label, 0)) for entry in report.per_label]
    return replace(report, per_label=per_label)


def label_counts(targets: list[int], n_labels: int) -> list[int]:
    tally = Counter(targets)
    return [tally[y] for y in range(n_labels)]
