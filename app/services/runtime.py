"""Model loading and request limits from settings; `app.bootstrap` composes the process."""

from __future__ import annotations

import logging

import torch

from app.config import Settings
from app.ml.learner import InnerLoopParams
from app.ml.loading import LoadedModel
from app.ml.loading import load_model as load_model_files
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


def load_model(settings: Settings) -> LoadedModel:
    """The configured encoder and inner loop (`app.ml.loading.load_model` with the settings' values)."""
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    return load_model_files(
        settings.checkpoint_path(),
        encoder_source=settings.encoder_source,
        encoder_sha256=settings.encoder_sha256 or None,
        max_tokens=settings.max_tokens,
        device=settings.device,
        default_inner=InnerLoopParams.constant(settings.inner_steps, settings.inner_lr, settings.logit_scale),
        precision=settings.encoder_precision,
        quantize=settings.quantize_int8,
        compile_encoder=settings.compile_encoder,
    )
