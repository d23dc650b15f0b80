"""PredictionService: tenant head (cached, validated) + shared encoder -> labels and probabilities."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from app.ml.embedder import Embedder
from app.ml.head import SINGLE_LABEL, TenantHead
from app.ml.threads import intra_op_threads
from app.services.adaptation import AdaptationService, Limits, check_text
from app.services.errors import ServiceError, encoder_not_served, invalid, unknown_tenant, unknown_version
from app.services.model_cache import CachedHead, HeadCache
from app.services.records import DEFAULT_ENCODER, UnusableModel, open_record
from app.store.base import StoredModel, TenantStore


@dataclass
class Prediction:
    label: str | None  # None when out of scope (multi-label: when no label applies)
    score: float
    top_k: list[tuple[str, float]]
    out_of_scope: bool
    oos_score: float
    labels: list[tuple[str, float]] | None = None  # multi-label: every label that applies, best first


@dataclass
class PredictResult:
    tenant_id: str
    version: int
    oos_threshold: float | None
    predictions: list[Prediction]
    timings_ms: dict[str, float] = field(default_factory=dict)
    task: str = SINGLE_LABEL
    encoder: str = DEFAULT_ENCODER
    label_threshold: float | None = None  # multi-label: the request's one threshold for every label, if given


class PredictionService:
    """Serves predictions; repairs stale or corrupt heads from the stored support set."""

    def __init__(
        self,
        embedder: Embedder,
        store: TenantStore,
        cache: HeadCache,
        adaptation: AdaptationService,
        limits: Limits,
        math_threads: int | None = None,
    ) -> None:
        self.embedder = embedder
        self.math_threads = math_threads  # intra-op threads for the head (None: the thread's own)
        self.store = store
        self.cache = cache
        self.adaptation = adaptation
        self.limits = limits

    def head_for(self, tenant_id: str) -> tuple[int, TenantHead]:
        """The tenant's current head, from the cache when its version is still current."""
        version = self.store.current_version(tenant_id)
        if version is None:
            raise unknown_tenant(tenant_id)
        cached = self.cache.get(tenant_id, version)
        if cached is not None and cached.fingerprint == self.embedder.fingerprint:
            return cached.version, cached.head
        stored = self.store.load(tenant_id)
        if stored is None:
            raise unknown_tenant(tenant_id)
        try:
            head = self._open(tenant_id, stored)
            version = stored.version
        except UnusableModel as exc:
            version, head = self._repair(tenant_id, stored.version, stored.meta.get("inner_steps"), exc)
        self.cache.put(tenant_id, CachedHead(version, self.embedder.fingerprint, head))
        return version, head

    def _open(self, tenant_id: str, stored: StoredModel) -> TenantHead:
        """`open_record` with this service's encoder; another encoder's record is a 409 `encoder_not_served` (a
        ServiceError, so it is never repaired), the other problems stay `UnusableModel`."""
        try:
            return open_record(stored, self.embedder.fingerprint, self.adaptation.encoder_name)
        except UnusableModel as exc:
            if exc.reason == "not_served":
                raise encoder_not_served(tenant_id, exc.encoder) from exc
            raise

    def _repair(
        self, tenant_id: str, version: int, inner_steps: object, problem: UnusableModel
    ) -> tuple[int, TenantHead]:
        steps = inner_steps if isinstance(inner_steps, int) and inner_steps >= 0 else None
        for _ in range(3):  # a concurrent /adapt may win the compare-and-set; then use its version
            rebuilt = self.adaptation.rebuild(tenant_id, version, steps)
            if rebuilt is not None:
                return rebuilt
            stored = self.store.load(tenant_id)
            if stored is None:
                raise unknown_tenant(tenant_id)
            try:
                return stored.version, self._open(tenant_id, stored)
            except UnusableModel as again:
                version, problem = stored.version, again
        raise ServiceError(409, "model_unusable", f"stored model is {problem.reason}: {problem}")

    def pinned_head(self, tenant_id: str, version: int) -> TenantHead:
        """A retained earlier version, decoded (not cached: pinning is for audits and A/B checks)."""
        stored = self.store.load(tenant_id, version=version)
        if stored is None:
            if self.store.current_version(tenant_id) is None:
                raise unknown_tenant(tenant_id)
            raise unknown_version(tenant_id, version)
        try:
            return self._open(tenant_id, stored)
        except UnusableModel as exc:
            raise ServiceError(409, "model_unusable", f"version {version} is {exc.reason}: {exc}") from exc

    def predict(
        self,
        tenant_id: str,
        texts: list[str],
        top_k: int = 1,
        version: int | None = None,
        oos_threshold: float | None = None,
        label_threshold: float | None = None,
    ) -> PredictResult:
        """Labels and probabilities; `version` pins a retained version, `oos_threshold` overrides the tenant's
        out-of-scope threshold (single-label), `label_threshold` every label's threshold (multi-label)."""
        started = time.perf_counter()
        if not texts:
            raise invalid("no_texts", "texts must hold at least one text")
        if len(texts) > self.limits.max_texts:
            raise invalid("too_many_texts", f"{len(texts)} texts; the limit is {self.limits.max_texts}")
        if not 1 <= top_k <= self.limits.max_top_k:
            raise invalid("invalid_top_k", f"top_k must be between 1 and {self.limits.max_top_k}")
        for i, text in enumerate(texts):
            check_text(text, self.limits, f"texts[{i}]")
        if version is None:
            version, head = self.head_for(tenant_id)
        else:
            head = self.pinned_head(tenant_id, version)
        if head.multi_label and oos_threshold is not None:
            raise invalid(
                "invalid_option",
                "oos_threshold applies to single-label tenants; a multi-label tenant shows out-of-scope as no label "
                "applying (see label_threshold)",
            )
        if not head.multi_label and label_threshold is not None:
            raise invalid("invalid_option", "label_threshold applies to multi-label tenants")
        threshold = head.oos_threshold if oos_threshold is None else oos_threshold
        loaded = time.perf_counter()
        embeddings = self.embedder.embed(texts)
        embedded = time.perf_counter()
        k = min(top_k, len(head.labels))
        with intra_op_threads(self.math_threads):
            scores_all = head.scores(embeddings)
            similarity = head.oos_scores(embeddings).tolist()
            scores, indices = torch.topk(scores_all, k, dim=-1)
            applies = _applying(head, scores_all, label_threshold) if head.multi_label else None
        predictions = []
        for row, (row_scores, row_indices, sim) in enumerate(
            zip(scores.tolist(), indices.tolist(), similarity, strict=True)
        ):
            ranked = [(head.labels[i], float(s)) for i, s in zip(row_indices, row_scores, strict=True)]
            if applies is not None:
                chosen = applies[row]
                predictions.append(
                    Prediction(
                        label=chosen[0][0] if chosen else None,
                        score=ranked[0][1],
                        top_k=ranked,
                        out_of_scope=not chosen,
                        oos_score=round(float(sim), 6),
                        labels=chosen,
                    )
                )
                continue
            outside = threshold is not None and sim < threshold
            predictions.append(
                Prediction(
                    label=None if outside else ranked[0][0],
                    score=ranked[0][1],
                    top_k=ranked,
                    out_of_scope=outside,
                    oos_score=round(float(sim), 6),
                )
            )
        done = time.perf_counter()
        timings = {
            "load": round((loaded - started) * 1000, 3),
            "embed": round((embedded - loaded) * 1000, 3),
            "head": round((done - embedded) * 1000, 3),
            "total": round((done - started) * 1000, 3),
        }
        override = label_threshold if head.multi_label else None
        encoder = self.adaptation.encoder_name
        return PredictResult(
            tenant_id,
            version,
            threshold,
            predictions,
            timings,
            task=head.task,
            label_threshold=override,
            encoder=encoder,
        )


def _applying(head: TenantHead, scores: torch.Tensor, override: float | None) -> list[list[tuple[str, float]]]:
    """Per text, the labels whose sigmoid score reaches their threshold (or `override`), best first."""
    thresholds = head.thresholds if override is None else torch.full_like(scores[0], override)
    chosen = []
    for row in scores:
        hits = (row >= thresholds).nonzero().squeeze(1).tolist()
        chosen.append(sorted(((head.labels[i], float(row[i])) for i in hits), key=lambda pair: -pair[1]))
    return chosen
