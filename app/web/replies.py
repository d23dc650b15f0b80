"""Service results -> response bodies: the one place where typed results become JSON shapes (and where report
metrics are rounded)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from app.access.keys import ApiKey
from app.ml import multilabel_report, tenant_report
from app.ml.label_names import NamesChoice
from app.ml.unlabeled import PoolChoice
from app.services.adaptation import AdaptResult
from app.services.feedback import FeedbackResult
from app.services.insight import Evaluation, SuggestResult
from app.services.prediction import PredictResult
from app.services.tenants import ModelSummary as ModelSummaryResult
from app.services.tenants import RollbackResult, TenantDescription, VersionHistory
from app.services.tiers import EncoderDescription
from app.store.base import JSON, PoolUpdate
from app.web.schemas import (
    AdaptResponse,
    ConfusedPair,
    EncoderInfo,
    EncoderList,
    EvaluateResponse,
    EvaluationReport,
    EvidenceOut,
    FeedbackResponse,
    KeyCreated,
    KeyInfo,
    LabeledText,
    LabelMetrics,
    LabelNeed,
    LabelScore,
    ModelSummary,
    MultiLabelMetrics,
    MultiLabelNeed,
    MultiLabelReport,
    NearDuplicate,
    OosPoint,
    PredictionOut,
    PredictResponse,
    RollbackResponse,
    SuggestionOut,
    SuggestResponse,
    SuspectedMislabel,
    TenantInfo,
    VersionList,
)
from app.web.schemas.insight import EncoderAdviceOut
from app.web.schemas.tenants import EncoderChoiceOut, LabelNamesOut
from app.web.schemas.unlabeled import UnlabeledOut, UnlabeledResponse


def adapted(result: AdaptResult) -> AdaptResponse:
    return AdaptResponse(
        tenant_id=result.tenant_id,
        version=result.version,
        labels=result.labels,
        counts=result.counts,
        n_examples=sum(result.counts.values()),
        n_descriptions=result.n_descriptions,
        n_embedded=result.n_embedded,
        inner_steps=result.inner_steps,
        oos_threshold=result.oos_threshold,
        encoder_fingerprint=result.encoder_fingerprint,
        timings_ms=result.timings_ms,
        task=result.task,
        n_negatives=result.n_negatives,
        thresholds=result.thresholds,
        encoder=result.encoder,
        label_names=_label_names(result.label_names),
        encoder_choice=None if result.encoder_choice is None else EncoderChoiceOut(**result.encoder_choice),
        unlabeled=_unlabeled(result.unlabeled),
    )


def _cross_validated(with_: float | None, without: float | None) -> dict[str, float | None]:
    """A decision's cross-validated scores with and without its evidence, rounded for JSON."""
    return {
        "cv_accuracy_with": None if with_ is None else round(with_, 4),
        "cv_accuracy_without": None if without is None else round(without, 4),
    }


def _unlabeled(choice: PoolChoice | None) -> UnlabeledOut | None:
    if choice is None:
        return None
    scores = _cross_validated(choice.cv_accuracy_with, choice.cv_accuracy_without)
    return UnlabeledOut(mode=choice.mode, used=choice.used, reason=choice.reason, pool_size=choice.pool_size, **scores)


def pool_updated(tenant_id: str, update: PoolUpdate, max_texts: int) -> UnlabeledResponse:
    return UnlabeledResponse(tenant_id=tenant_id, max_texts=max_texts, **asdict(update))


def _label_names(choice: NamesChoice | None) -> LabelNamesOut | None:
    if choice is None:
        return None
    scores = _cross_validated(choice.cv_accuracy_with, choice.cv_accuracy_without)
    return LabelNamesOut(mode=choice.mode, used=choice.used, reason=choice.reason, n_named=choice.n_named, **scores)


def predicted(result: PredictResult, pool_size: int | None = None) -> PredictResponse:
    return PredictResponse(
        tenant_id=result.tenant_id,
        version=result.version,
        encoder=result.encoder,
        task=result.task,
        oos_threshold=result.oos_threshold,
        label_threshold=result.label_threshold,
        predictions=[
            PredictionOut(
                label=p.label,
                score=p.score,
                out_of_scope=p.out_of_scope,
                oos_score=p.oos_score,
                top_k=[LabelScore(label=label, score=score) for label, score in p.top_k],
                labels=None if p.labels is None else [LabelScore(label=name, score=score) for name, score in p.labels],
                evidence=None
                if p.evidence is None
                else [EvidenceOut(label=e.label, text=e.text, similarity=e.similarity) for e in p.evidence],
            )
            for p in result.predictions
        ],
        timings_ms=result.timings_ms,
        unlabeled_pool_size=pool_size,
    )


def corrected(result: FeedbackResult) -> FeedbackResponse:
    return FeedbackResponse(
        **adapted(result.adapted).model_dump(),
        added=result.added,
        ignored_duplicates=result.ignored_duplicates,
        relabelled=result.relabelled,
    )


def encoder_list(encoders: list[EncoderDescription]) -> EncoderList:
    return EncoderList(encoders=[EncoderInfo(**asdict(encoder)) for encoder in encoders])


def summary(model: ModelSummaryResult) -> ModelSummary:
    return ModelSummary(**asdict(model))


def tenant_info(description: TenantDescription) -> TenantInfo:
    return TenantInfo(tenant_id=description.tenant_id, status=description.status, **asdict(description.model))


def version_list(history: VersionHistory) -> VersionList:
    return VersionList(
        tenant_id=history.tenant_id, current=history.current, versions=[summary(v) for v in history.versions]
    )


def rolled_back(result: RollbackResult) -> RollbackResponse:
    return RollbackResponse(tenant_id=result.tenant_id, version=result.version, restored_from=result.restored_from)


def key_info(record: ApiKey) -> KeyInfo:
    return KeyInfo(
        key_id=record.key_id,
        name=record.name,
        admin=record.admin,
        tenants=list(record.tenants),
        prefix=record.prefix,
        created_at=record.created_at,
    )


def key_created(key: str, record: ApiKey) -> KeyCreated:
    return KeyCreated(**key_info(record).model_dump(), key=key)


def evaluated(result: Evaluation, advice: JSON | None = None) -> EvaluateResponse:
    report = result.report
    return EvaluateResponse(
        tenant_id=result.tenant_id,
        version=result.version,
        cached=result.cached,
        report=(
            multilabel_body(report)
            if isinstance(report, multilabel_report.MultiLabelReport)
            else single_label_body(report)
        ),
        timings_ms=result.timings_ms,
        encoder_advice=None if advice is None else EncoderAdviceOut(**advice),
    )


def single_label_body(report: tenant_report.SingleLabelReport) -> EvaluationReport:
    interval = report.accuracy_interval
    return EvaluationReport(
        method=report.method,
        n_folds=report.n_folds,
        n_labels=report.n_labels,
        n_examples=report.n_examples,
        n_evaluated=report.n_evaluated,
        evaluable=report.evaluable,
        accuracy=_round(report.accuracy),
        accuracy_ci95=None if interval is None else [round(interval[0], 4), round(interval[1], 4)],
        projected_accuracy=_round(report.projected_accuracy),
        learning_curve=_learning_curve(report),
        macro_f1=_round(report.macro_f1),
        ece=_round(report.ece),
        mean_confidence=_round(report.mean_confidence),
        not_evaluable=report.not_evaluable,
        per_label=[
            LabelMetrics(
                label=m.label,
                examples=m.examples,
                support=m.support,
                status="ok" if m.evaluable else "not_evaluable",
                precision=_round(m.precision),
                recall=_round(m.recall),
                f1=_round(m.f1),
                corrections=m.corrections,
            )
            for m in report.per_label
        ],
        confusion=_confusion(report.confusion),
        confused_pairs=[
            ConfusedPair(true=p.true, predicted=p.predicted, count=p.count, rate=round(p.rate, 4), examples=p.examples)
            for p in report.confused_pairs
        ],
        labels_needing_examples=[
            LabelNeed(
                label=n.label,
                examples=n.examples,
                recall=_round(n.recall),
                confused_with=n.confused_with,
                reasons=n.reasons,
            )
            for n in report.labels_needing_examples
        ],
        suspected_mislabels=[
            SuspectedMislabel(
                text=m.text,
                label=m.label,
                nearest_label=m.nearest_label,
                own_similarity=round(m.own_similarity, 4),
                nearest_similarity=round(m.nearest_similarity, 4),
                margin=round(m.margin, 4),
            )
            for m in report.suspected_mislabels
        ],
        near_duplicates=[
            NearDuplicate(
                similarity=round(d.similarity, 4),
                a=LabeledText(text=d.a.text, label=d.a.label),
                b=LabeledText(text=d.b.text, label=d.b.label),
            )
            for d in report.near_duplicates
        ],
        oos_tradeoff=[
            OosPoint(
                threshold=round(p.threshold, 4),
                rule=p.rule,
                in_scope_recall=round(p.in_scope_recall, 4),
                false_rejection=round(p.false_rejection, 4),
                accuracy=round(p.accuracy, 4),
            )
            for p in report.oos_tradeoff
        ],
    )


def _learning_curve(report: tenant_report.SingleLabelReport) -> dict[str, list[float]] | None:
    curve, projected = report.learning_curve, report.projected_accuracy
    if curve is None or projected is None:
        return None
    return {
        "examples_per_label": [
            round(curve.reduced_per_label, 3),
            round(curve.train_per_label, 3),
            round(curve.full_per_label, 3),
        ],
        "accuracy": [round(curve.reduced_accuracy, 4), round(curve.accuracy, 4), round(projected, 4)],
    }


def _confusion(confusion: tenant_report.DenseConfusion | tenant_report.SparseConfusion) -> dict[str, Any]:
    if isinstance(confusion, tenant_report.DenseConfusion):
        return {"format": "dense", "labels": confusion.labels, "matrix": confusion.matrix}
    return {
        "format": "sparse",
        "labels": confusion.labels,
        "diagonal": confusion.diagonal,
        "cells": [{"true": c.true, "predicted": c.predicted, "count": c.count} for c in confusion.cells],
    }


def multilabel_body(report: multilabel_report.MultiLabelReport) -> MultiLabelReport:
    return MultiLabelReport(
        method=report.method,
        n_folds=report.n_folds,
        n_labels=report.n_labels,
        n_examples=report.n_examples,
        n_negatives=report.n_negatives,
        n_evaluated=report.n_evaluated,
        evaluable=report.evaluable,
        micro_f1=_round(report.micro_f1),
        macro_f1=_round(report.macro_f1),
        exact_match=_round(report.exact_match),
        labels_per_text={
            "true": round(report.labels_per_text.true, 3),
            "predicted": round(report.labels_per_text.predicted, 3),
        },
        per_label=[
            MultiLabelMetrics(
                label=m.label,
                examples=m.examples,
                support=m.support,
                precision=_round(m.precision),
                recall=_round(m.recall),
                f1=_round(m.f1),
                threshold=round(m.threshold, 4),
            )
            for m in report.per_label
        ],
        labels_needing_examples=[
            MultiLabelNeed(label=n.label, examples=n.examples, f1=_round(n.f1), reasons=n.reasons)
            for n in report.labels_needing_examples
        ],
    )


def _round(value: float | None, digits: int = 4) -> float | None:
    """Report metrics go out with 4 decimals."""
    return None if value is None else round(value, digits)


def suggested(result: SuggestResult) -> SuggestResponse:
    return SuggestResponse(
        tenant_id=result.tenant_id,
        version=result.version,
        pool_size=result.pool_size,
        source=result.source,
        suggestions=[
            SuggestionOut(
                text=text,
                predicted_label=pick.predicted,
                score=pick.score,
                runner_up=pick.runner_up,
                margin=pick.margin,
                reason=pick.reason,
            )
            for text, pick in result.suggestions
        ],
        timings_ms=result.timings_ms,
    )
