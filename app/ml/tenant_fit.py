"""Fitting one tenant's head: support set -> embeddings -> inner loop -> prototypes -> OOS threshold -> head.

Multi-label support sets (`SupportSet.label_sets`) get a one-vs-rest head whose per-label decision
thresholds are cross-validated on the support set (`app.ml.thresholds`) and stored with it.

This is what `/adapt` runs (`AdaptationService.fit` is a thin call of `fit_tenant`) and what the
evaluation scores as the `/adapt` path, so the two cannot drift apart.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import torch

from app.ml.calibration import FITTED, TemperatureRule, label_separation
from app.ml.embedder import Embedder
from app.ml.embedding_cache import EmbeddingLRU
from app.ml.head import MULTI_LABEL, SINGLE_LABEL, TenantHead
from app.ml.learner import InnerLoopParams, adapt_head, head_logits
from app.ml.ood import normalized_prototypes, oos_threshold
from app.ml.policy import OosRule
from app.ml.threads import intra_op_threads
from app.ml.thresholds import OutOfFold, ThresholdRule, fit_decision, out_of_fold_scores
from app.ml.work import stop_if_cancelled


@dataclass
class SupportSet:
    """Validated support: examples with label indices, plus optional label descriptions.

    Single-label: `targets` holds each example's label index. Multi-label: `label_sets` holds each
    example's label indices (empty: a negative example, no label applies) and `targets` is empty.
    """

    texts: list[str]
    labels: list[str]  # distinct labels, in output order
    targets: list[int]
    descriptions: dict[str, str] = field(default_factory=dict)
    label_sets: list[tuple[int, ...]] | None = None

    @property
    def task(self) -> str:
        return SINGLE_LABEL if self.label_sets is None else MULTI_LABEL

    def _described(self) -> tuple[list[str], list[int]]:
        """Each description's text and its label's index, in label order (a description is one more example)."""
        described = [i for i, label in enumerate(self.labels) if label in self.descriptions]
        return [self.descriptions[self.labels[i]] for i in described], described

    def fit_inputs(self) -> tuple[list[str], list[int]]:
        """Single-label texts and targets the inner loop sees: examples, then each description as one more example."""
        texts, targets = self._described()
        return self.texts + texts, self.targets + targets

    def fit_tensors(self) -> tuple[list[str], torch.Tensor]:
        """Texts and the target tensor the inner loop sees (examples, then descriptions as examples): label
        indices `[n]` for single-label, multi-hot `[n, n_labels]` for multi-label."""
        if self.label_sets is None:
            texts, targets = self.fit_inputs()
            return texts, torch.tensor(targets, dtype=torch.long)
        texts, targets = self._described()
        rows = [*self.label_sets, *((i,) for i in targets)]
        multi_hot = torch.zeros(len(rows), len(self.labels))
        for i, row in enumerate(rows):
            multi_hot[i, list(row)] = 1.0
        return self.texts + texts, multi_hot

    def counts(self) -> dict[str, int]:
        """Examples per label (multi-label: examples the label applies to)."""
        tally = Counter(self.targets if self.label_sets is None else (i for row in self.label_sets for i in row))
        return {label: tally[i] for i, label in enumerate(self.labels)}

    @property
    def n_negatives(self) -> int:
        """Multi-label examples to which no label applies."""
        return sum(1 for row in self.label_sets or () if not row)


@dataclass
class TenantFit:
    head: TenantHead
    n_embedded: int  # texts that went through the embedder (the rest came from the cache)
    timings_ms: dict[str, float]


_NO_CACHE = EmbeddingLRU(0)  # keeps nothing: distinct texts embedded once per call


def fit_tenant(
    support: SupportSet,
    embedder: Embedder,
    inner: InnerLoopParams,
    oos_rule: OosRule | None = None,
    *,
    cache: EmbeddingLRU | None = None,
    scope: str = "",
    generation: str = "",
    math_threads: int | None = None,
    temperature: TemperatureRule = FITTED,
    threshold_rule: ThresholdRule | None = None,
    unlabeled: torch.Tensor | None = None,
) -> TenantFit:
    """Embed the support set (texts in `cache` under `scope` and `generation` reused) and run `inner` (its own step
    count); single-label fits take the tenant's embedded `unlabeled` texts into the inner loop when given.

    `math_threads`: intra-op threads for the inner loop and the threshold (None: the calling thread's).
    """
    started = time.perf_counter()
    texts, targets = support.fit_tensors()
    embeddings, n_embedded = (cache if cache is not None else _NO_CACHE).embed(texts, embedder.embed, scope, generation)
    embedded = time.perf_counter()
    with intra_op_threads(math_threads):
        if targets.ndim == 2:
            head = fit_multilabel(embeddings, targets, support.labels, inner, threshold_rule, len(support.texts))
        else:
            head = fit_embedded(embeddings, targets, support.labels, inner, oos_rule, temperature, unlabeled)
    adapted = time.perf_counter()
    return TenantFit(head, n_embedded, {"embed": _ms(embedded - started), "inner_loop": _ms(adapted - embedded)})


def fit_embedded(
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    labels: list[str],
    inner: InnerLoopParams,
    oos_rule: OosRule | None = None,
    temperature: TemperatureRule = FITTED,
    unlabeled: torch.Tensor | None = None,
) -> TenantHead:
    """The fitting maths on embedded fit inputs: inner loop (with the information term on `unlabeled` embeddings
    when given, `app.ml.unlabeled`), prototypes, OOS threshold, served temperature.

    `fit_tenant` (what `/adapt` runs) and the cross-validation of `app.ml.tenant_report` both call this. Each fit
    first checks that its work is still wanted (`stop_if_cancelled`): a report whose client left stops at its next
    fold.
    """
    stop_if_cancelled()
    rule = oos_rule or OosRule()
    n_labels = len(labels)
    tensors = adapt_head(embeddings, targets, n_labels, inner, differentiable=False, unlabeled=unlabeled)
    prototypes = normalized_prototypes(embeddings, targets, n_labels)
    threshold = oos_threshold(embeddings, targets, n_labels, rule.quantile, rule.fallback)
    factor = temperature.factor(n_labels, len(targets) / n_labels, label_separation(prototypes))
    scale = float(inner.scale) * factor
    return TenantHead.from_tensors(labels, tensors, scale, prototypes, threshold)


def fit_multilabel(
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    labels: list[str],
    inner: InnerLoopParams,
    rule: ThresholdRule | None = None,
    n_examples: int | None = None,
) -> TenantHead:
    """One-vs-rest head on multi-hot `targets` `[n, c]`, with per-label thresholds cross-validated through the
    same inner loop (`app.ml.thresholds`) on the first `n_examples` rows (default: all; the rest, descriptions
    and names, train in every fold: `held_out_scores`). Prototypes are the positives' unit means; no
    out-of-scope threshold: a text to which no label applies gets none, which is how out-of-scope shows."""
    stop_if_cancelled()
    rule = rule or ThresholdRule()
    n_labels = len(labels)
    n = targets.shape[0] if n_examples is None else n_examples
    held_out = held_out_scores(embeddings, targets, n, inner, rule)
    decision = fit_decision(held_out.scores, targets[:n], held_out.valid, rule)
    tensors = adapt_head(embeddings, targets, n_labels, inner, differentiable=False)
    prototypes = normalized_prototypes(embeddings, targets, n_labels)  # of the texts each label applies to
    return TenantHead.from_tensors(
        labels, tensors, float(inner.scale), prototypes, None, decision.thresholds, decision.min_labels
    )


def held_out_scores(
    embeddings: torch.Tensor, targets: torch.Tensor, n_examples: int, inner: InnerLoopParams, rule: ThresholdRule
) -> OutOfFold:
    """Out-of-fold scores of a multi-label tenant's examples (the first `n_examples` rows of `embeddings` and
    multi-hot `targets`); the other rows (descriptions, label names) train in every fold, never held out."""
    extra = targets.shape[0] - n_examples

    def score(ids: torch.Tensor) -> torch.Tensor:
        every = torch.cat([ids, ids.new_full((extra,), -1)])  # -1: in no fold, so in every fold's training rows
        return fold_scores(embeddings, targets, every, inner)[:n_examples]

    return out_of_fold_scores(targets[:n_examples], rule.folds, score)


def fold_scores(
    embeddings: torch.Tensor, targets: torch.Tensor, ids: torch.Tensor, inner: InnerLoopParams
) -> torch.Tensor:
    """Every fold's head in one inner loop (columns `[fold, label]`, each fold's own examples unseen by its columns,
    each fold's loss averaged over its training examples), then each example's scores from its fold's columns."""
    stop_if_cancelled()
    n, c = targets.shape
    folds = int(ids.max()) + 1
    trains = (ids.unsqueeze(1) != torch.arange(folds).unsqueeze(0)).to(targets.dtype)  # [n, folds]
    per_fold = trains / trains.sum(dim=0).clamp(min=1)  # each fold's loss is a mean over its training examples
    weights = per_fold.repeat_interleave(c, dim=1)  # [n, folds * c]
    wide = adapt_head(embeddings, targets.repeat(1, folds), folds * c, inner, differentiable=False, weights=weights)
    logits = head_logits(embeddings, wide, inner.scale).view(n, folds, c)
    return torch.sigmoid(logits[torch.arange(n), ids])


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
