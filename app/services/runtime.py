"""Model loading policy (encoder, checkpoint, precision) and request limits from settings; `app.bootstrap` composes."""

from __future__ import annotations

import logging

import torch

from app.config import Settings
from app.ml.checkpoint import load_checkpoint
from app.ml.encoder import SentenceEncoder, bf16_is_fast, load_encoder, quantize_int8, use_bf16
from app.ml.learner import InnerLoopParams
from app.services.adaptation import Limits

log = logging.getLogger("fewshot")


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_examples=settings.max_examples,
        max_labels=settings.max_labels,
        max_texts=settings.max_texts,
        max_text_chars=settings.max_text_chars,
        max_label_chars=settings.max_label_chars,
        max_top_k=settings.max_top_k,
    )


def load_model(settings: Settings) -> tuple[SentenceEncoder, InnerLoopParams, str | None]:
    """Base encoder + optional meta-trained checkpoint; inner-loop defaults from settings otherwise."""
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    encoder = load_encoder(
        settings.encoder_source, settings.encoder_sha256 or None, settings.max_tokens, settings.device
    )
    checkpoint = settings.checkpoint_path()
    if checkpoint is None:
        inner = InnerLoopParams.constant(settings.inner_steps, settings.inner_lr, settings.logit_scale)
    else:
        inner = load_checkpoint(checkpoint, encoder)
    if settings.quantize_int8:
        quantize_int8(encoder)
    elif serve_in_bf16(settings.encoder_precision, encoder):
        use_bf16(encoder)
    if settings.compile_encoder:
        encoder.transformer = torch.compile(encoder.transformer, dynamic=True)
    return encoder, inner, None if checkpoint is None else str(checkpoint)


def serve_in_bf16(precision: str, encoder: SentenceEncoder) -> bool:
    """`bfloat16`, or `auto` on a CPU with native bf16 math (elsewhere bf16 is emulated and slower)."""
    if precision == "bfloat16":
        return True
    return precision == "auto" and encoder.device.type == "cpu" and bf16_is_fast()
