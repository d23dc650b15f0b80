"""Build the process-wide objects (encoder, store, services) from settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from app.config import Settings
from app.ml.batching import MicroBatcher
from app.ml.checkpoint import load_checkpoint
from app.ml.encoder import SentenceEncoder, bf16_is_fast, load_encoder, quantize_int8, use_bf16
from app.ml.learner import InnerLoopParams
from app.services.adaptation import AdaptationService, Limits, OosRule
from app.services.embedding_cache import EmbeddingCache
from app.services.model_cache import HeadCache
from app.services.prediction import PredictionService
from app.services.tenants import TenantService
from app.store import TenantStore, build_store

log = logging.getLogger("fewshot")


@dataclass
class Runtime:
    settings: Settings
    encoder: SentenceEncoder
    inner: InnerLoopParams
    store: TenantStore
    cache: HeadCache
    adaptation: AdaptationService
    prediction: PredictionService
    tenants: TenantService
    checkpoint: str | None
    batcher: MicroBatcher | None = None

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.store.close()


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


def build_runtime(
    settings: Settings, model: tuple[SentenceEncoder, InnerLoopParams, str | None] | None = None
) -> Runtime:
    """Everything a server process needs; `model` lets tests share one loaded encoder."""
    encoder, inner, checkpoint = model if model is not None else load_model(settings)
    store = build_store(
        settings.store,
        redis_url=settings.redis_url,
        prefix=settings.redis_prefix,
        ttl_s=settings.tenant_ttl_s,
        timeout_s=settings.redis_timeout_s,
        keep_versions=settings.keep_versions,
    )
    cache = HeadCache(settings.model_cache_size, max_bytes=int(settings.model_cache_mb * 2**20))
    limits = limits_from(settings)
    batcher = None
    if settings.batching_enabled:
        batcher = MicroBatcher(
            lambda texts: encoder.embed(texts, batch_size=settings.embed_batch_size),
            max_batch_texts=settings.batch_max_texts,
            max_wait_ms=settings.batch_max_wait_ms,
            threads=torch.get_num_threads(),  # the encoder pass gets every core (or `torch_threads`)
        )
    embed = batcher.embed if batcher is not None else None
    math_threads = 1 if batcher is not None else None  # request threads only run small per-tenant math
    adaptation = AdaptationService(
        encoder,
        inner,
        store,
        limits,
        settings.embed_batch_size,
        oos_rule=OosRule(settings.oos_quantile, settings.oos_fallback_threshold),
        embedding_cache=EmbeddingCache(settings.embedding_cache_size),
        embed=embed,
        math_threads=math_threads,
    )
    prediction = PredictionService(
        encoder, store, cache, adaptation, limits, settings.embed_batch_size, embed=embed, math_threads=math_threads
    )
    tenants = TenantService(store, cache, encoder.fingerprint)
    log.info(
        "runtime ready: encoder=%s fingerprint=%s checkpoint=%s store=%s device=%s",
        settings.encoder_source,
        encoder.fingerprint,
        checkpoint,
        settings.store,
        encoder.device,
    )
    return Runtime(settings, encoder, inner, store, cache, adaptation, prediction, tenants, checkpoint, batcher)
