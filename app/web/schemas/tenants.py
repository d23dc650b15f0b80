"""Bodies of the tenant routes: /adapt, /predict, a tenant's versions and rollback, the tenant list."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from app.ml.registry import DEFAULT_ENCODER
from app.web.schemas.common import ENCODER_NAME_PATTERN, TenantId
from app.web.schemas.unlabeled import UnlabeledOut


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
        description="The encoder to adapt with (GET /encoders; default: the server's first), or `auto`: the service "
        "chooses among the served tiers from this support set (its language, then each tier's cross-validated "
        "accuracy; the cheaper tier unless another wins clearly) and the reply's `encoder_choice` says why. `append` "
        "keeps the tenant's own (naming another is 409 `encoder_mismatch`; `auto` keeps it); `replace` may switch.",
    )
    expected_version: StrictInt | None = Field(
        None,
        ge=1,
        description="Compare-and-set: adapt only if the tenant is at this version (409 `concurrent_update` "
        "otherwise). Omitted: no check.",
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
    label_names: Literal["auto", "on", "off"] | None = Field(
        None,
        description="Whether a label without a description gets its name as one (`card_arrival` -> `card "
        "arrival`): `auto` (names that read as words, kept when cross-validation on the support set does not drop "
        "with them; never codes such as `INT_0042`), `on` (every name), `off`. Default: `auto` for `replace`, the "
        "tenant's own for `append`.",
    )
    unlabeled: Literal["auto", "off"] | None = Field(
        None,
        description="Whether the tenant's unlabeled texts (POST /tenants/{id}/unlabeled) may join the fit: `auto` "
        "(single-label tenants whose pool holds at least 10 texts per label; used when cross-validation on the "
        "support set rises with them), `off`. Default: `auto` for `replace`, the tenant's own for `append`.",
    )


class LabelNamesOut(BaseModel):
    mode: Literal["auto", "on", "off"]
    used: bool = Field(description="Whether the label names joined the support set as examples.")
    reason: str = Field(description="Why (in words).")
    n_named: int = Field(0, description="Labels whose name joined as an example.")
    cv_accuracy_with: float | None = Field(
        None, description="`auto`: cross-validated accuracy with the names (multi-label tenants: micro-F1)."
    )
    cv_accuracy_without: float | None = Field(
        None, description="`auto`: cross-validated accuracy without them (multi-label tenants: micro-F1)."
    )


class EncoderChoiceOut(BaseModel):
    """Why `encoder: "auto"` chose the tenant's tier."""

    requested: Literal["auto"] = "auto"
    chosen: str = Field(description="The tier the tenant was adapted with.")
    preferred: str = Field(description="The cheapest served tier for the support set's language.")
    language: str = Field(description="`en`, or `other` (any other language, or a mixture).")
    english_share: float = Field(description="Share of the support texts that read as English.")
    accuracies: dict[str, float] = Field(
        description="Cross-validated accuracy of each served tier on the support set (empty for multi-label)."
    )
    reason: str


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
    label_names: LabelNamesOut | None = Field(None, description="Whether the label names were used, and why.")
    unlabeled: UnlabeledOut | None = Field(None, description="Whether the unlabeled texts were used, and why.")
    encoder_choice: EncoderChoiceOut | None = Field(
        None, description="`encoder: auto`: which tier was chosen and why (kept by every later append)."
    )


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
    explain: StrictInt = Field(
        0,
        description="Evidence per text: its `explain` nearest support examples (0-10; 0: none; outside: 422 "
        "`invalid_explain`) of the predicted label and of the runner-up, by cosine similarity.",
    )
    keep_unlabeled: StrictBool = Field(
        False,
        description="Also keep the texts in the tenant's unlabeled pool, as POST /tenants/{id}/unlabeled does "
        "(after they are classified; the reply's `unlabeled_pool_size` says how many it holds).",
    )


class EvidenceOut(BaseModel):
    label: str = Field(description="The label this support example belongs to.")
    text: str = Field(description="A support example of the tenant (its own data only).")
    similarity: float = Field(description="Cosine similarity of its embedding to the text's.")


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
    evidence: list[EvidenceOut] | None = Field(
        None,
        description="With `explain: k`: the k support examples of the predicted label nearest to the text, most "
        "similar first, then the k of the runner-up label (fewer when a label has fewer examples). Out of scope "
        "(label null): those of the top-scoring label anyway. Multi-label: the k of each label that applies (of "
        "the top-scoring one when none does), no runner-up. Absent without `explain`.",
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
    unlabeled_pool_size: int | None = Field(
        None, description="With `keep_unlabeled`: how many texts the tenant's unlabeled pool holds now."
    )


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
    encoder_choice: EncoderChoiceOut | None = Field(None, description="`encoder: auto`: why the tier was chosen.")


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


class TenantList(BaseModel):
    tenants: list[str] = Field(description="Tenant ids with a model that the calling key may access (one page).")
    next_after: str | None = Field(
        None, description="More follow: pass this as `after` for the next page. None: this was the last page."
    )
