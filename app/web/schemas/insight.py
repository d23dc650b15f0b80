"""Bodies of the insight routes: /evaluate (single- and multi-label reports) and /suggest."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from app.web.schemas.tenants import EncoderChoiceOut, Example


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
    corrections: int = Field(0, description="Of its examples, how many came from corrections (/feedback).")


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
    accuracy_ci95: list[float] | None = Field(
        description="95 % interval of the served model's accuracy: Wilson's for a test set; from cross-validation "
        "centred on `projected_accuracy`, with labels as clusters and the projection's uncertainty "
        "(docs/accuracy.md)."
    )
    projected_accuracy: float | None = Field(
        None,
        description="Cross-validation only; a projection, not a measurement: `accuracy` plus half of one step "
        "along the learning curve to the full number of examples per label (each fold trains on fewer), never "
        "below `accuracy` nor above the upper end of its Wilson interval.",
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


class EncoderAdviceOut(EncoderChoiceOut):
    current: str = Field(description="The tier the tenant is adapted with.")
    switch: bool = Field(description="Whether another tier is recommended.")


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
    cached: bool = Field(
        description="True when this request did not compute the report: an earlier request for this version did, "
        "or an identical concurrent one whose computation it shared."
    )
    report: Annotated[EvaluationReport | MultiLabelReport, Field(discriminator="task")] = Field(
        description="`task: single_label` or `multi_label` (micro/macro-F1, exact match, per-label thresholds)."
    )
    timings_ms: dict[str, float]
    encoder_advice: EncoderAdviceOut | None = Field(
        None,
        description="With several tiers served (cross-validation reports only): the tier `encoder: auto` would "
        "choose for this support set now; `switch` when it is not the tenant's (a `replace` adapt moves it).",
    )


class SuggestRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"texts": ["card still not here", "what rate do you use for yen", "can I pay with my phone"], "k": 2}
            ]
        },
    )
    texts: list[str] | None = Field(
        None,
        description="Unlabeled texts to choose from (duplicates count once). Left out: the tenant's unlabeled pool "
        "(POST /tenants/{id}/unlabeled), its newest texts that the support set does not hold.",
    )
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
    source: Literal["request", "unlabeled"] = Field(
        "request", description="Where the candidates came from: the request's texts, or the tenant's unlabeled pool."
    )
    suggestions: list[SuggestionOut] = Field(description="In pick order; label them and POST /adapt mode=append.")
    timings_ms: dict[str, float]
