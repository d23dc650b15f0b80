"""Fitting one tenant's head: support set -> embeddings -> inner loop -> prototypes -> OOS threshold -> head.

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
from app.ml.head import TenantHead
from app.ml.learner import InnerLoopParams, adapt_head
from app.ml.ood import normalized_prototypes, oos_threshold
from app.ml.threads import intra_op_threads


@dataclass(frozen=True)
class OosRule:
    """How a tenant's out-of-scope threshold is set from its support set."""

    quantile: float = 0.05
    fallback: float | None = 0.35


@dataclass
class SupportSet:
    """Validated support: examples with label indices, plus optional label descriptions."""

    texts: list[str]
    labels: list[str]  # distinct labels, in output order
    targets: list[int]
    descriptions: dict[str, str] = field(default_factory=dict)

    def fit_inputs(self) -> tuple[list[str], list[int]]:
        """Texts and targets the inner loop sees: examples, then each description as one more example."""
        index = {label: i for i, label in enumerate(self.labels)}
        described = [label for label in self.labels if label in self.descriptions]
        texts = self.texts + [self.descriptions[label] for label in described]
        return texts, self.targets + [index[label] for label in described]

    def counts(self) -> dict[str, int]:
        tally = Counter(self.targets)
        return {label: tally[i] for i, label in enumerate(self.labels)}


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
    math_threads: int | None = None,
    temperature: TemperatureRule = FITTED,
) -> TenantFit:
    """Embed the support set (texts in `cache` under `scope` reused) and run `inner` (its own step count).

    `math_threads`: intra-op threads for the inner loop and the threshold (None: the calling thread's).
    """
    started = time.perf_counter()
    texts, target_list = support.fit_inputs()
    embeddings, n_embedded = (cache if cache is not None else _NO_CACHE).embed(texts, embedder.embed, scope)
    embedded = time.perf_counter()
    targets = torch.tensor(target_list, dtype=torch.long)
    with intra_op_threads(math_threads):
        head = fit_embedded(embeddings, targets, support.labels, inner, oos_rule, temperature)
    adapted = time.perf_counter()
    return TenantFit(head, n_embedded, {"embed": _ms(embedded - started), "inner_loop": _ms(adapted - embedded)})


def fit_embedded(
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    labels: list[str],
    inner: InnerLoopParams,
    oos_rule: OosRule | None = None,
    temperature: TemperatureRule = FITTED,
) -> TenantHead:
    """The fitting maths on embedded fit inputs: inner loop, prototypes, OOS threshold, served temperature.

    `fit_tenant` (what `/adapt` runs) and the cross-validation of `app.ml.tenant_report` both call this.
    """
    rule = oos_rule or OosRule()
    n_labels = len(labels)
    tensors = adapt_head(embeddings, targets, n_labels, inner, differentiable=False)
    prototypes = normalized_prototypes(embeddings, targets, n_labels)
    threshold = oos_threshold(embeddings, targets, n_labels, rule.quantile, rule.fallback)
    factor = temperature.factor(n_labels, len(targets) / n_labels, label_separation(prototypes))
    scale = float(inner.scale) * factor
    return TenantHead.from_tensors(labels, tensors, scale, prototypes, threshold)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
