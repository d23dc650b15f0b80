"""Request and response bodies (each with an example for the OpenAPI page)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, model_validator

from app.ml.registry import DEFAULT_ENCODER

# Request bodies use strict scalars: a JSON string is never a number or a boolean, nor a boolean a number.

TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ENCODER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
TenantId = Annotated[
    str,
    Field(
        pattern=TENANT_ID_PATTERN,
        description="1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit",
        examples=["acme-support"],
    ),
]


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="An example utterance.", examples=["I still have not received my card"])
    label: str | None = Field(
        None, description="Its label (single-label tenants; required there).", examples=["card_arrival"]
    )
    labels: list[str] | None = Field(
        None,
        description="Multi-label tenants only (required there): every label that applies; `[]` for a negative "
        "example to which none applies.",
        examples=[["billing", "bug_report"]],
    )


class AdaptRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "acme-support",
                    "examples": [
                        {"text": "my card has not arrived yet", "label": "card_arrival"},
                        {"text": "when will the new card get here?", "label": "card_arrival"},
                        {"text": "what is the exchange rate for euros", "label": "exchange_rate"},
                        {"text": "how much is a dollar in pounds today", "label": "exchange_rate"},
                    ],
                },
                {
                    "tenant_id": "acme-tickets",
                    "task": "multi_label",
                    "examples": [
                        {"text": "I was charged twice and the app crashes", "labels": ["billing", "bug"]},
                        {"text": "refund my last payment please", "labels": ["billing"]},
                        {"text": "the export button throws an error", "labels": ["bug"]},
                        {"text": "thanks, all good now", "labels": []},
                    ],
                },
            ]
        },
    )
    tenant_id: TenantId
    task: Literal["single_label", "multi_label"] | None = Field(
        None,
        description="`single_label` (each example has one `label`) or `multi_label` (each has `labels`: zero, one "
        "or more). Default: `single_label` for `replace`, the tenant's own task for `append`; changing a tenant's "
        "task needs `mode: replace` (an `append` naming another task gets 409 `task_mismatch`).",
    )
    encoder: str | None = Field(
        None,
        max_length=64,
        pattern=ENCODER_NAME_PATTERN,
        description="The encoder to adapt with (GET /encoders; default: the server's first). `append` keeps the "
        "tenant's own (naming another is 409 `encoder_mismatch`); `replace` may switch.",
    )
    examples: list[Example] = Field(description="The support set: labeled examples (a few per label).")
    labels: list[str] | None = Field(
        None, description="Optional declared label set (output order); each must have an example."
    )
    inner_steps: StrictInt | None = Field(
        None, ge=0, le=200, description="Inner-loop SGD steps; default from the loaded checkpoint."
    )
    mode: Literal["replace", "append"] = Field(
        "replace",
        description="`replace`: these examples are the whole support set. `append`: add them (and new labels) "
        "to the stored support set and re-adapt; unchanged examples are not re-embedded.",
    )
    remove_labels: list[str] | None = Field(None, description="With `mode: append`: labels to drop.")
    label_descriptions: dict[str, str] | None = Field(
        None,
        description="Optional human-readable description per label, embedded as one more example of it "
        "(a label may have only a description).",
        examples=[{"card_arrival": "card arrival: where is my new card"}],
    )


class AdaptResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "acme-support",
                    "version": 1,
                    "labels": ["card_arrival", "exchange_rate"],
                    "counts": {"card_arrival": 2, "exchange_rate": 2},
                    "n_examples": 4,
                    "n_descriptions": 0,
                    "n_embedded": 4,
                    "inner_steps": 50,
                    "oos_threshold": 0.42,
                    "encoder_fingerprint": "3f1c9a0b7d2e4f51",
                    "timings_ms": {"embed": 9.1, "inner_loop": 2.3, "store": 0.4, "total": 11.8},
                }
            ]
        }
    )
    tenant_id: str
    version: int = Field(description="New model version (strictly increasing per tenant).")
    labels: list[str]
    counts: dict[str, int] = Field(description="Examples per label.")
    n_examples: int
    n_descriptions: int = Field(0, description="Labels with a description.")
    n_embedded: int = Field(0, description="Texts that went through the encoder (the rest came from the cache).")
    inner_steps: int
    oos_threshold: float | None = Field(description="Out-of-scope threshold set from the support set.")
    encoder_fingerprint: str
    timings_ms: dict[str, float]
    task: Literal["single_label", "multi_label"] = "single_label"
    n_negatives: int = Field(0, description="Multi-label: examples to which no label applies.")
    thresholds: dict[str, float] | None = Field(
        None, description="Multi-label: each label's decision threshold (cross-validated on the support set)."
    )
    encoder: str = Field(DEFAULT_ENCODER, description="The encoder the tenant was adapted with.")


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"tenant_id": "acme-support", "texts": ["where is my card?"], "top_k": 2}]},
    )
    tenant_id: TenantId
    texts: list[str] = Field(description="Texts to classify.")
    top_k: StrictInt = Field(1, description="How many ranked labels to return per text.")
    version: StrictInt | None = Field(None, ge=1, description="Pin a retained earlier version (default: current).")
    oos_threshold: StrictFloat | None = Field(
        None,
        ge=-1,
        le=1,
        description="Single-label tenants: override the out-of-scope threshold (-1 turns detection off).",
    )
    label_threshold: StrictFloat | None = Field(
        None,
        gt=0,
        lt=1,
        description="Multi-label tenants: one decision threshold for every label instead of each label's own.",
    )


class LabelScore(BaseModel):
    label: str
    score: float = Field(
        description="Single-label: probability of the label (softmax over the tenant's labels). Multi-label: the "
        "label's own probability (one sigmoid per label; they need not sum to 1)."
    )


class PredictionOut(BaseModel):
    label: str | None = Field(
        description="Most probable label; null when the text is out of scope (multi-label: the best label that "
        "applies; null when none does)."
    )
    score: float = Field(description="Probability of the most probable label.")
    out_of_scope: bool = Field(
        False, description="True when the text belongs to none of the tenant's labels (multi-label: none applies)."
    )
    oos_score: float = Field(0.0, description="Cosine similarity to the nearest label prototype.")
    top_k: list[LabelScore]
    labels: list[LabelScore] | None = Field(
        None,
        description="Multi-label tenants: every label whose score reaches its threshold, best first (empty: none "
        "applies). Absent for single-label tenants.",
    )


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "acme-support",
                    "version": 1,
                    "oos_threshold": 0.42,
                    "predictions": [
                        {
                            "label": "card_arrival",
                            "score": 0.97,
                            "out_of_scope": False,
                            "oos_score": 0.71,
                            "top_k": [
                                {"label": "card_arrival", "score": 0.97},
                                {"label": "exchange_rate", "score": 0.03},
                            ],
                        }
                    ],
                    "timings_ms": {"load": 0.2, "embed": 6.0, "head": 0.1, "total": 6.4},
                }
            ]
        }
    )
    tenant_id: str
    version: int = Field(description="Version of the model that answered.")
    encoder: str = Field(DEFAULT_ENCODER, description="The encoder that embedded the texts (the tenant's).")
    task: Literal["single_label", "multi_label"] = "single_label"
    oos_threshold: float | None = Field(None, description="Out-of-scope threshold that was applied.")
    label_threshold: float | None = Field(None, description="Multi-label: the request's one threshold, if given.")
    predictions: list[PredictionOut]
    timings_ms: dict[str, float]


_MODEL_SUMMARY_EXAMPLE: dict[str, Any] = {
    "version": 3,
    "head_bytes": 3320,
    "labels": ["card_arrival", "exchange_rate"],
    "counts": {"card_arrival": 5, "exchange_rate": 5},
    "n_examples": 10,
    "n_descriptions": 0,
    "inner_steps": 50,
    "oos_threshold": 0.41,
    "encoder_fingerprint": "3f1c9a0b7d2e4f51",
    "created_at": "2026-11-24T08:00:00.000+00:00",
}


class ModelSummary(BaseModel):
    """What a stored version was adapted from and how (one entry of `VersionList`; `TenantInfo` adds the tenant)."""

    version: int
    head_bytes: int = Field(description="Size of the head's safetensors bytes (stored zlib'd in Redis).")
    labels: list[str]
    counts: dict[str, int] = Field(description="Examples per label.")
    n_examples: int
    n_descriptions: int = 0
    inner_steps: int | None
    oos_threshold: float | None = None
    encoder_fingerprint: str | None
    created_at: str | None
    task: Literal["single_label", "multi_label"] = "single_label"
    encoder: str = Field(DEFAULT_ENCODER, description="The encoder the version was adapted with.")
    n_negatives: int = Field(0, description="Multi-label: examples to which no label applies.")
    thresholds: dict[str, float] | None = Field(None, description="Multi-label: each label's decision threshold.")


class TenantInfo(ModelSummary):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"tenant_id": "acme-support", "status": "ready", **_MODEL_SUMMARY_EXAMPLE}]}
    )
    tenant_id: str
    status: str = Field(
        description="`ready`, or why the stored head cannot serve as is: `stale`, `corrupt`, `schema`, or "
        "`not_served` (adapted with an encoder this server does not serve)."
    )


class VersionList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"tenant_id": "acme-support", "current": 3, "versions": [_MODEL_SUMMARY_EXAMPLE]}]
        }
    )
    tenant_id: str
    current: int
    versions: list[ModelSummary] = Field(description="Retained versions, newest first.")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 2}]})
    version: StrictInt = Field(ge=1, description="A retained version to restore.")


class RollbackResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"tenant_id": "acme-support", "version": 4, "restored_from": 2}]}
    )
    tenant_id: str
    version: int = Field(description="The new current version (a copy of `restored_from`).")
    restored_from: int


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable error code.", examples=["too_few_labels"])
    message: str = Field(description="What went wrong, for humans.")
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": {"code": "unknown_tenant", "message": "tenant 'x' has no model"}}]}
    )
    error: ErrorBody


class EncoderInfo(BaseModel):
    name: str
    default: bool = Field(description="New tenants get this encoder unless `/adapt` names another.")
    dim: int = Field(description="Embedding dimensions.")
    fingerprint: str = Field(description="Changes when the weights or the checkpoint change (tenants re-adapt).")
    checkpoint: str | None = Field(description="The meta-trained checkpoint applied (folder name), if any.")
    precision: str = Field(description="Serving precision of the encoder weights.")


class EncoderList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "encoders": [
                        {
                            "name": DEFAULT_ENCODER,
                            "default": True,
                            "dim": 384,
                            "fingerprint": "3f1c9a0b7d2e4f51",
                            "checkpoint": "minilm-protomaml",
                            "precision": "float32",
                        }
                    ]
                }
            ]
        }
    )
    encoders: list[EncoderInfo]


class HealthResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})
    status: str


class ReadyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ready", "encoder_fingerprint": "3f1c9a0b7d2e4f51", "checkpoint": None, "store": "redis"}
            ]
        }
    )
    status: str
    encoder_fingerprint: str
    checkpoint: str | None
    store: str


class KeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "acme backend", "tenants": ["acme-support"], "admin": False}]},
    )
    name: str = Field("", max_length=100, description="Free-form label for humans.")
    tenants: list[TenantId] = Field(default_factory=list, max_length=1000, description="Tenants the key may use.")
    admin: StrictBool = Field(False, description="Admin keys reach every tenant and manage keys.")

    @model_validator(mode="after")
    def _scoped_or_admin(self) -> KeyCreate:
        if not self.admin and not self.tenants:
            raise ValueError("a non-admin key needs at least one tenant")
        return self


class KeyInfo(BaseModel):
    key_id: str
    name: str
    admin: bool
    tenants: list[str]
    prefix: str = Field(description="First characters of the key, to recognise it; never the key.")
    created_at: str


class KeyCreated(KeyInfo):
    key: str = Field(description="The API key. Shown once: only its sha256 is stored.")


class KeyList(BaseModel):
    keys: list[KeyInfo]


class TenantList(BaseModel):
    tenants: list[str] = Field(description="Tenant ids with a model that the calling key may access.")


class EvaluateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {},
                {"version": 2},
                {"examples": [{"text": "is my card on its way?", "label": "card_arrival"}]},
            ]
        },
    )
    version: StrictInt | None = Field(None, ge=1, description="Evaluate a retained earlier version (default: current).")
    examples: list[Example] | None = Field(
        None,
        description="A labeled test set: score the model on it instead of cross-validating its support set "
        "(`label` for single-label tenants, `labels` for multi-label ones).",
    )


class LabelMetrics(BaseModel):
    label: str
    examples: int = Field(description="Examples of the label in the support set.")
    support: int = Field(description="Examples of the label that were scored (held out or in the test set).")
    status: Literal["ok", "not_evaluable"] = Field(description="`not_evaluable`: too few examples to hold one out.")
    precision: float | None
    recall: float | None
    f1: float | None


class ConfusedPair(BaseModel):
    true: str
    predicted: str
    count: int
    rate: float = Field(description="Share of the true label's scored examples predicted as `predicted`.")
    examples: list[str] = Field(description="A few of the confused texts.")


class LabelNeed(BaseModel):
    label: str
    examples: int
    recall: float | None
    confused_with: str | None
    reasons: list[str]


class SuspectedMislabel(BaseModel):
    text: str
    label: str = Field(description="The label it is filed under.")
    nearest_label: str = Field(description="The other label whose prototype is closer.")
    own_similarity: float = Field(description="Cosine to its own label's prototype computed without it.")
    nearest_similarity: float
    margin: float


class LabeledText(BaseModel):
    text: str
    label: str


class NearDuplicate(BaseModel):
    similarity: float
    a: LabeledText
    b: LabeledText


class OosPoint(BaseModel):
    threshold: float = Field(description="Similarity threshold (for `tenant`: the mean of the folds' thresholds).")
    rule: Literal["tenant", "fixed"]
    in_scope_recall: float = Field(description="Share of in-scope examples accepted.")
    false_rejection: float = Field(description="Share of in-scope examples rejected as out of scope.")
    accuracy: float = Field(description="Share accepted and correctly classified.")


class EvaluationReport(BaseModel):
    task: Literal["single_label"] = "single_label"
    method: Literal["cross_validation", "test_set"]
    n_folds: int
    n_labels: int
    n_examples: int = Field(description="Examples in the support set.")
    n_evaluated: int = Field(description="Predictions scored.")
    evaluable: bool
    accuracy: float | None = Field(
        description="Measured accuracy: the share of the scored predictions (held out in cross-validation, or "
        "the test set's) that are right; the confusion matrix counts the same predictions."
    )
    accuracy_ci95: list[float] | None = Field(description="95 % Wilson interval of `accuracy`.")
    projected_accuracy: float | None = Field(
        None,
        description="Cross-validation only; a projection, not a measurement: `accuracy` extrapolated along the "
        "learning curve to the full number of examples per label (each fold trains on fewer), never below "
        "`accuracy` nor above the upper end of `accuracy_ci95`.",
    )
    learning_curve: dict[str, list[float]] | None = Field(
        None,
        description="Cross-validation only: `examples_per_label` [thinned, folds' training, full support] and "
        "`accuracy` [held-out with the thinned training sets, `accuracy`, `projected_accuracy`].",
    )
    macro_f1: float | None
    ece: float | None = Field(description="Expected calibration error of the served scores (15 bins).")
    mean_confidence: float | None
    not_evaluable: list[str] = Field(description="Labels with a single example (never held out).")
    per_label: list[LabelMetrics]
    confusion: dict[str, Any] = Field(
        description="`dense`: `labels` and `matrix[true][predicted]` (up to 50 labels); `sparse`: `diagonal` and "
        "the non-zero off-diagonal `cells`."
    )
    confused_pairs: list[ConfusedPair]
    labels_needing_examples: list[LabelNeed]
    suspected_mislabels: list[SuspectedMislabel]
    near_duplicates: list[NearDuplicate] = Field(description="Texts under different labels with cosine >= 0.95.")
    oos_tradeoff: list[OosPoint]


class MultiLabelMetrics(BaseModel):
    label: str
    examples: int = Field(description="Support examples the label applies to.")
    support: int = Field(description="Scored texts the label applies to (held out or in the test set).")
    precision: float | None
    recall: float | None
    f1: float | None
    threshold: float = Field(description="The label's decision threshold (cross-validated as /adapt does).")


class MultiLabelNeed(BaseModel):
    label: str
    examples: int
    f1: float | None
    reasons: list[str]


class MultiLabelReport(BaseModel):
    task: Literal["multi_label"] = "multi_label"
    method: Literal["cross_validation", "test_set"]
    n_folds: int
    n_labels: int
    n_examples: int = Field(description="Examples in the support set.")
    n_negatives: int = Field(description="Support examples to which no label applies.")
    n_evaluated: int = Field(description="Texts scored.")
    evaluable: bool
    micro_f1: float | None = Field(description="Micro-averaged F1 of the held-out (or test) decisions.")
    macro_f1: float | None = Field(description="Mean F1 over the labels with a true or predicted positive.")
    exact_match: float | None = Field(description="Share of texts whose whole label set is right.")
    labels_per_text: dict[str, float] = Field(description="Mean labels per text: `true` and `predicted`.")
    per_label: list[MultiLabelMetrics]
    labels_needing_examples: list[MultiLabelNeed]


class EvaluateResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "acme-support",
                    "version": 3,
                    "cached": False,
                    "report": {
                        "method": "cross_validation",
                        "n_folds": 3,
                        "n_labels": 2,
                        "n_examples": 6,
                        "n_evaluated": 6,
                        "evaluable": True,
                        "accuracy": 0.8333,
                        "accuracy_ci95": [0.4365, 0.9699],
                        "projected_accuracy": 0.8571,
                        "learning_curve": {"examples_per_label": [1.0, 2.0, 3.0], "accuracy": [0.6667, 0.8333, 0.8571]},
                        "macro_f1": 0.8286,
                        "ece": 0.12,
                        "mean_confidence": 0.81,
                        "not_evaluable": [],
                        "per_label": [
                            {
                                "label": "card_arrival",
                                "examples": 3,
                                "support": 3,
                                "status": "ok",
                                "precision": 1.0,
                                "recall": 0.6667,
                                "f1": 0.8,
                            }
                        ],
                        "confusion": {
                            "format": "dense",
                            "labels": ["card_arrival", "exchange_rate"],
                            "matrix": [[2, 1], [0, 3]],
                        },
                        "confused_pairs": [
                            {
                                "true": "card_arrival",
                                "predicted": "exchange_rate",
                                "count": 1,
                                "rate": 0.3333,
                                "examples": ["is the card in the post"],
                            }
                        ],
                        "labels_needing_examples": [
                            {
                                "label": "card_arrival",
                                "examples": 3,
                                "recall": 0.6667,
                                "confused_with": "exchange_rate",
                                "reasons": ["low recall 0.67", "few examples (3)", "confused with exchange_rate"],
                            }
                        ],
                        "suspected_mislabels": [],
                        "near_duplicates": [],
                        "oos_tradeoff": [
                            {
                                "threshold": 0.41,
                                "rule": "tenant",
                                "in_scope_recall": 0.83,
                                "false_rejection": 0.17,
                                "accuracy": 0.67,
                            }
                        ],
                    },
                    "timings_ms": {"load": 1.2, "embed": 0.3, "cross_validation": 40.5, "total": 42.0},
                }
            ]
        }
    )
    tenant_id: str
    version: int = Field(description="The version the report describes.")
    cached: bool = Field(description="True when the report was computed earlier for this version.")
    report: Annotated[EvaluationReport | MultiLabelReport, Field(discriminator="task")] = Field(
        description="`task: single_label` or `multi_label` (micro/macro-F1, exact match, per-label thresholds)."
    )
    timings_ms: dict[str, float]


class SuggestRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"texts": ["card still not here", "what rate do you use for yen", "can I pay with my phone"], "k": 2}
            ]
        },
    )
    texts: list[str] = Field(description="Unlabeled texts to choose from (duplicates count once).")
    k: StrictInt = Field(10, le=1000, description="How many texts to suggest (at least 1).")


class SuggestionOut(BaseModel):
    text: str
    predicted_label: str = Field(
        description="The current model's label: confirm or correct it (multi-label: the highest-scoring label)."
    )
    score: float
    runner_up: str | None = Field(
        description="Single-label: the second most probable label. Multi-label: the label whose decision is the "
        "closest call (probability nearest its threshold)."
    )
    margin: float = Field(
        description="Single-label: top probability minus the runner-up's. Multi-label: distance of the runner-up's "
        "probability to its threshold."
    )
    reason: str


class SuggestResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "acme-support",
                    "version": 3,
                    "pool_size": 3,
                    "suggestions": [
                        {
                            "text": "what rate do you use for yen",
                            "predicted_label": "exchange_rate",
                            "score": 0.55,
                            "runner_up": "card_arrival",
                            "margin": 0.1,
                            "reason": "unsure between exchange_rate and card_arrival (margin 0.10)",
                        }
                    ],
                    "timings_ms": {"load": 1.0, "embed": 8.0, "select": 0.4, "total": 9.6},
                }
            ]
        }
    )
    tenant_id: str
    version: int
    pool_size: int = Field(description="Distinct texts considered.")
    suggestions: list[SuggestionOut] = Field(description="In pick order; label them and POST /adapt mode=append.")
    timings_ms: dict[str, float]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown tenant."},
    409: {"model": ErrorResponse, "description": "The stored model cannot be used or repaired."},
    422: {"model": ErrorResponse, "description": "Invalid request (see `error.code`)."},
    503: {"model": ErrorResponse, "description": "The tenant store is unreachable (`store_unavailable`)."},
}
