"""Typed request and response bodies of the fewshot-service API (kept in step with the server's /openapi.json by
tests/client/test_schema_drift.py). Replies keep fields this client does not know yet (`extra="allow"`); requests
refuse unknown ones, as the server does."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Task = Literal["single_label", "multi_label"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def body(self) -> dict[str, Any]:
        """The JSON body: unset options are left out, so the server applies its defaults."""
        return self.model_dump(exclude_none=True)


class _Reply(BaseModel):
    model_config = ConfigDict(extra="allow")


class Example(_Request):
    text: str
    label: str | None = None
    labels: list[str] | None = None


class AdaptRequest(_Request):
    tenant_id: str
    examples: list[Example]
    task: Task | None = None
    encoder: str | None = None
    labels: list[str] | None = None
    inner_steps: int | None = None
    mode: Literal["replace", "append"] | None = None
    remove_labels: list[str] | None = None
    label_descriptions: dict[str, str] | None = None
    expected_version: int | None = Field(None, description="Compare-and-set: fail with 409 unless current.")
    label_names: Literal["auto", "on", "off"] | None = None
    unlabeled: Literal["auto", "off"] | None = None


class LabelNamesOut(_Reply):
    mode: Literal["auto", "on", "off"]
    used: bool
    reason: str
    n_named: int = 0
    cv_accuracy_with: float | None = None
    cv_accuracy_without: float | None = None


class UnlabeledOut(_Reply):
    mode: str  # `auto` or `off` (the server's schema says str: a mode added later still parses)
    used: bool
    reason: str
    pool_size: int = 0
    cv_accuracy_with: float | None = None
    cv_accuracy_without: float | None = None


class EncoderChoiceOut(_Reply):
    requested: Literal["auto"] = "auto"
    chosen: str
    preferred: str
    language: str
    english_share: float
    accuracies: dict[str, float]
    reason: str


class AdaptResponse(_Reply):
    tenant_id: str
    version: int
    labels: list[str]
    counts: dict[str, int]
    n_examples: int
    n_descriptions: int = 0
    n_embedded: int = 0
    inner_steps: int
    oos_threshold: float | None
    encoder_fingerprint: str
    timings_ms: dict[str, float]
    task: Task = "single_label"
    n_negatives: int = 0
    thresholds: dict[str, float] | None = None
    encoder: str | None = None
    label_names: LabelNamesOut | None = None
    encoder_choice: EncoderChoiceOut | None = None
    unlabeled: UnlabeledOut | None = None


class PredictRequest(_Request):
    tenant_id: str
    texts: list[str]
    top_k: int | None = None
    version: int | None = None
    oos_threshold: float | None = None
    label_threshold: float | None = None
    explain: int | None = Field(None, description="0..10 nearest support examples per label (evidence).")
    keep_unlabeled: bool | None = Field(None, description="Also keep the texts in the tenant's unlabeled pool.")


class LabelScore(_Reply):
    label: str
    score: float


class Evidence(_Reply):
    label: str
    text: str
    similarity: float


class Prediction(_Reply):
    label: str | None
    score: float
    out_of_scope: bool = False
    oos_score: float = 0.0
    top_k: list[LabelScore]
    labels: list[LabelScore] | None = None
    evidence: list[Evidence] | None = None


class PredictResponse(_Reply):
    tenant_id: str
    version: int
    encoder: str | None = None
    task: Task = "single_label"
    oos_threshold: float | None = None
    label_threshold: float | None = None
    predictions: list[Prediction]
    timings_ms: dict[str, float]
    unlabeled_pool_size: int | None = None  # with `keep_unlabeled`: the pool's size afterwards


class ModelSummary(_Reply):
    version: int
    head_bytes: int
    labels: list[str]
    counts: dict[str, int]
    n_examples: int
    n_descriptions: int = 0
    inner_steps: int | None
    oos_threshold: float | None = None
    encoder_fingerprint: str | None
    created_at: str | None
    task: Task = "single_label"
    encoder: str | None = None
    n_negatives: int = 0
    thresholds: dict[str, float] | None = None


class TenantInfo(ModelSummary):
    tenant_id: str
    status: str


class VersionList(_Reply):
    tenant_id: str
    current: int
    versions: list[ModelSummary]


class TenantList(_Reply):
    tenants: list[str]
    next_after: str | None = None


class RollbackRequest(_Request):
    version: int


class RollbackResponse(_Reply):
    tenant_id: str
    version: int
    restored_from: int


class EvaluateRequest(_Request):
    version: int | None = None
    examples: list[Example] | None = None


class EvaluateResponse(_Reply):
    tenant_id: str
    version: int
    cached: bool
    report: dict[str, Any] = Field(description="The single- or multi-label report (see docs/api.md, Insight).")
    timings_ms: dict[str, float]


class SuggestRequest(_Request):
    texts: list[str] | None = Field(None, description="Left out: the server picks from the tenant's unlabeled pool.")
    k: int | None = None


class Suggestion(_Reply):
    text: str
    predicted_label: str
    score: float
    runner_up: str | None
    margin: float
    reason: str


class SuggestResponse(_Reply):
    tenant_id: str
    version: int
    pool_size: int
    source: Literal["request", "unlabeled"] = "request"
    suggestions: list[Suggestion]
    timings_ms: dict[str, float]


class Correction(_Request):
    text: str
    label: str
    predicted: str | None = None


class FeedbackRequest(_Request):
    corrections: list[Correction]
    expected_version: int | None = None


class FeedbackResponse(AdaptResponse):
    """The /adapt reply (the corrections became examples of a new version) with what became of them."""

    added: int = Field(description="Corrections stored as new examples (relabelled texts included).")
    ignored_duplicates: int = Field(description="Corrections the tenant already held with the same label.")
    relabelled: int = Field(0, description="Stored examples whose label a correction replaced.")


class UnlabeledRequest(_Request):
    texts: list[str]


class UnlabeledResponse(_Reply):
    tenant_id: str
    added: int
    repeated: int
    dropped: int
    size: int
    max_texts: int


class PoolResponse(_Reply):
    tenant_id: str
    size: int
    max_texts: int


class PoolCleared(_Reply):
    tenant_id: str
    removed: int


class EncoderInfo(_Reply):
    name: str
    default: bool
    dim: int
    fingerprint: str
    checkpoint: str | None
    precision: str


class EncoderList(_Reply):
    encoders: list[EncoderInfo]


class Health(_Reply):
    status: str
