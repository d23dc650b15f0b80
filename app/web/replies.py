"""Service results -> response bodies: the one place where typed results become JSON shapes."""

from __future__ import annotations

from dataclasses import asdict

from app.access.keys import ApiKey
from app.services.adaptation import AdaptResult
from app.services.insight import Evaluation, SuggestResult
from app.services.prediction import PredictResult
from app.services.tenants import ModelSummary as ModelSummaryResult
from app.services.tenants import RollbackResult, TenantDescription, VersionHistory
from app.services.tiers import EncoderDescription
from app.web.schemas import (
    AdaptResponse,
    EncoderInfo,
    EncoderList,
    EvaluateResponse,
    EvaluationReport,
    KeyCreated,
    KeyInfo,
    LabelScore,
    ModelSummary,
    MultiLabelReport,
    PredictionOut,
    PredictResponse,
    RollbackResponse,
    SuggestionOut,
    SuggestResponse,
    TenantInfo,
    VersionList,
)


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
    )


def predicted(result: PredictResult) -> PredictResponse:
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
            )
            for p in result.predictions
        ],
        timings_ms=result.timings_ms,
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


def evaluated(result: Evaluation) -> EvaluateResponse:
    return EvaluateResponse(
        tenant_id=result.tenant_id,
        version=result.version,
        cached=result.cached,
        report=(
            MultiLabelReport(**result.report)
            if result.report.get("task") == "multi_label"
            else EvaluationReport(**result.report)
        ),
        timings_ms=result.timings_ms,
    )


def suggested(result: SuggestResult) -> SuggestResponse:
    return SuggestResponse(
        tenant_id=result.tenant_id,
        version=result.version,
        pool_size=result.pool_size,
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
