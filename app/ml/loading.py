"""The model-loading policy: base encoder (verified), optional meta-trained checkpoint, serving precision.

Plain arguments, no settings object: the service (`app.bootstrap.load_tier_model`, from a tier's
`EncoderSpec`), the evaluation and bench scripts all load through `load_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch

from app.ml.checkpoint import load_checkpoint, load_multilabel_inner
from app.ml.encoder import (
    POOLING,
    SentenceEncoder,
    bf16_is_fast,
    load_encoder,
    quantize_int8,
    trace_inference_graph,
    use_bf16,
)
from app.ml.learner import InnerLoopParams
from app.ml.packaged import (
    DEFAULT_MULTILABEL_LR,
    DEFAULT_MULTILABEL_SCALE,
    DEFAULT_MULTILABEL_STEPS,
    PACKAGED_ENCODER,
    PACKAGED_ENCODER_SHA256,
)
from app.ml.registry import DEFAULT_ENCODER, EncoderSpec, spec


class LoadedModel(NamedTuple):
    encoder: SentenceEncoder
    inner: InnerLoopParams  # the checkpoint's meta-learned inner loop, else the defaults given
    checkpoint: str | None  # the checkpoint folder applied, if any


def default_inner_loop(tier: EncoderSpec | None = None) -> InnerLoopParams:
    """The inner loop without a checkpoint: the one tuned for the tier's encoder (default: the default tier)."""
    inner = (tier or spec(DEFAULT_ENCODER)).inner
    return InnerLoopParams.constant(inner.steps, inner.lr, inner.logit_scale)


def multi_label_inner_loop(checkpoint: Path | None) -> InnerLoopParams:
    """The one-vs-rest inner loop of multi-label tenants: the checkpoint's meta-learned one, else the defaults."""
    learned = None if checkpoint is None else load_multilabel_inner(checkpoint)
    if learned is not None:
        return learned
    return InnerLoopParams.constant(DEFAULT_MULTILABEL_STEPS, DEFAULT_MULTILABEL_LR, DEFAULT_MULTILABEL_SCALE)


def load_model(
    checkpoint: Path | None,
    *,
    encoder_source: str = PACKAGED_ENCODER,
    encoder_sha256: str | None = PACKAGED_ENCODER_SHA256,
    max_tokens: int = 128,
    device: str = "auto",
    default_inner: InnerLoopParams | None = None,
    precision: str = "float32",
    quantize: bool = False,
    compile_encoder: bool = False,
    models_dir: Path | None = None,
    trace: bool = False,
    attention: str | None = None,
    prefix: str = "",
    pooling: str = POOLING,
) -> LoadedModel:
    """Base encoder + optional meta-trained checkpoint, then int8 or the serving precision, then compile or trace.

    `precision`: `float32`, `bfloat16`, or `auto` (see `serve_in_bf16`); `quantize` (int8) wins over it.
    `trace`: `embed` through a TorchScript trace (`trace_inference_graph`; not with int8 or compile).
    `attention`, `prefix`, `pooling`: what the tier's `EncoderSpec` needs (`pooling`: mean + L2 is the only one).
    """
    if pooling != POOLING:
        raise ValueError(f"pooling {pooling!r} is not served; only {POOLING!r}")
    encoder = load_encoder(
        encoder_source, encoder_sha256, max_tokens, device, attention, models_dir=models_dir, prefix=prefix
    )
    if checkpoint is None:
        inner = default_inner if default_inner is not None else default_inner_loop()
    else:
        inner = load_checkpoint(checkpoint, encoder)
    if quantize:
        quantize_int8(encoder)
    elif serve_in_bf16(precision, encoder):
        use_bf16(encoder)
    if compile_encoder:
        encoder.transformer = torch.compile(encoder.transformer, dynamic=True)
    elif trace and not quantize:
        trace_inference_graph(encoder)
    return LoadedModel(encoder, inner, None if checkpoint is None else str(checkpoint))


def serve_in_bf16(precision: str, encoder: SentenceEncoder) -> bool:
    """`bfloat16`, or `auto` on a CPU with native bf16 math (elsewhere bf16 is emulated and slower)."""
    if precision == "bfloat16":
        return True
    return precision == "auto" and encoder.device.type == "cpu" and bf16_is_fast()


def load_spec(tier: EncoderSpec, **serving: Any) -> LoadedModel:
    """`load_model` for one tier: its source, expected hash, checkpoint, inner-loop defaults, attention, prefix
    and pooling from the spec; `serving` (precision, device, trace, ...) as `load_model` takes them."""
    return load_model(
        tier.checkpoint,
        encoder_source=tier.source,
        encoder_sha256=tier.sha256,
        default_inner=default_inner_loop(tier),
        attention=tier.attention,
        prefix=tier.prefix,
        pooling=tier.pooling,
        **serving,
    )
