"""The composition root: builds the encoder, store, access guard and services from `Settings`. It is the only
library module below the web layer that reads them; besides it only `cli.py` (process tuning, host and port),
`web/app.py` (logging, admission, body cap, metrics) and `web/server.py` (uvicorn options) do, and `config_doc.py`
renders them.

One Redis client per process (`app.store.connect`: a single server or a Redis Cluster) serves the tenant store,
the API keys and the rate limiter alike, with one retry policy and one translation of Redis errors
(`app.store.redis_errors`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from app.access.guard import AccessGuard, build_guard
from app.access.keys import digest
from app.config import Settings
from app.ml.batching import MicroBatcher
from app.ml.embedder import Embedder, EncoderEmbedder, RoutedEmbedder
from app.ml.embedding_cache import EmbeddingLRU
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams
from app.ml.loading import LoadedModel, load_spec, multi_label_inner_loop
from app.ml.pass_runner import PassRunner
from app.ml.threads import ThreadPolicy
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.insight import InsightService, ReportCache
from app.services.model_cache import HeadCache
from app.services.prediction import PredictionService
from app.services.tenants import TenantService
from app.services.tiers import EncoderDescription, Tier, Tiers
from app.services.unlabeled import UnlabeledService
from app.store import RedisClient, TenantStore, build_store, connect

log = logging.getLogger("fewshot")

REPORT_CACHE_TENANTS = 256  # tenants whose evaluation reports are kept (a few versions each)


def load_model(settings: Settings) -> LoadedModel:
    """The default tier's encoder and inner loop (the first of `encoders`)."""
    return load_tier_model(settings, settings.encoder_names()[0])


def load_tier_model(settings: Settings, name: str) -> LoadedModel:
    """The model of one encoder tier: the registry's spec with the settings' overrides (`Settings.tier`)."""
    return load_spec(
        settings.tier(name),
        max_tokens=settings.max_tokens,
        device=settings.device,
        precision=settings.encoder_precision,
        quantize=settings.quantize_int8,
        compile_encoder=settings.compile_encoder,
        trace=settings.trace_encoder,
        models_dir=Path(settings.models_dir).expanduser(),
    )


@dataclass(frozen=True)
class Readiness:
    """What `/readyz` may tell anyone: states and ids, never paths or addresses."""

    encoder_fingerprint: str
    checkpoint: str | None  # the checkpoint's folder name, not its path
    store: str


@dataclass
class Runtime:
    """Every process-wide object a server needs, typed; the web layer hands each route only what it uses."""

    store: TenantStore
    cache: HeadCache
    tenants: TenantService
    guard: AccessGuard
    readiness: Readiness
    tiers: Tiers  # the served encoders and their services (`tiers.default`, `tiers.named(name)`)
    pools: UnlabeledService  # the tenants' pools of unlabeled texts
    batchers: list[MicroBatcher] = field(default_factory=list)  # one per served encoder (batching on)
    redis_client: RedisClient | None = None
    pass_runner: PassRunner | None = None  # runs every tier's passes when several encoders are served

    @property
    def batcher(self) -> MicroBatcher | None:
        """The default encoder's micro-batcher."""
        return self.batchers[0] if self.batchers else None

    def close(self) -> None:
        for batcher in self.batchers:
            batcher.close()
        if self.pass_runner is not None:
            self.pass_runner.close()
        self.store.close()
        if self.redis_client is not None:
            self.redis_client.close()


def admin_digest(settings: Settings) -> str | None:
    """sha256 of the bootstrap admin key: `admin_key_sha256`, else the digest of `admin_key`, else None."""
    if settings.admin_key_sha256:
        return settings.admin_key_sha256.strip().lower()
    if settings.admin_key is not None and settings.admin_key.get_secret_value():
        return digest(settings.admin_key.get_secret_value())
    return None


def build_access(settings: Settings, client: RedisClient | None) -> AccessGuard:
    """The access guard over the process's Redis client (memory keys and limits without one)."""
    return build_guard(
        settings.auth_enabled,
        client,
        settings.redis_prefix,
        (settings.rate_limit_requests, settings.rate_limit_window_s),
        admin_digest(settings),
    )


def _multi_label_inner(checkpoint: str | None) -> InnerLoopParams:
    """The checkpoint folder's multi-label inner loop (defaults without one). A model handed in by a test may name
    a checkpoint that is no folder here: defaults then too."""
    folder = None if checkpoint is None else Path(checkpoint)
    return multi_label_inner_loop(folder if folder is not None and folder.is_dir() else None)


def _precision(encoder: SentenceEncoder) -> str:
    if encoder.quantized:
        return "int8"
    return str(next(encoder.transformer.parameters()).dtype).removeprefix("torch.")


def thread_policy(settings: Settings) -> ThreadPolicy:
    """The process's intra-op thread policy (`app.ml.threads`)."""
    return ThreadPolicy.of(settings.torch_threads, settings.batching_enabled)


def build_tier(
    name: str,
    model: LoadedModel,
    settings: Settings,
    store: TenantStore,
    cache: HeadCache,
    default: bool,
    runner: PassRunner | None = None,
) -> tuple[Tier, MicroBatcher | None]:
    """One encoder's embedder (its own micro-batcher; its passes on `runner` when tiers share one), the tier's
    context built from it, and the services that share that context."""
    encoder, inner, checkpoint = model
    policy = thread_policy(settings)
    embedder: Embedder = EncoderEmbedder(encoder, settings.embed_batch_size)
    batcher = None
    if settings.batching_enabled:
        batcher = MicroBatcher(
            embedder.embed,
            max_batch_texts=settings.batch_max_texts,
            max_wait_ms=settings.batch_max_wait_ms,
            linger_ms=settings.batch_linger_ms,
            threads=None if runner is not None else policy.encoder,  # every core (or `torch_threads`)
            runner=runner,
            max_tokens=settings.batch_max_tokens,
            chunk_tokens=settings.batch_chunk_tokens,
            cost=encoder.token_estimate,
        )
        embedder = RoutedEmbedder(batcher.embed, embedder)
    context = TierContext(
        embedder,
        inner,
        settings.limits(),
        encoder_name=name,
        multi_inner=_multi_label_inner(checkpoint),
        oos_rule=settings.oos_rule(),
        embeddings=EmbeddingLRU(settings.embedding_cache_size),
        pool_embeddings=EmbeddingLRU(settings.pool_cache_size),
        math_threads=policy.math,  # beside a batcher, request threads only run small per-tenant math
        embed_async=None if batcher is None else batcher.embed_async,
    )
    adaptation = AdaptationService(context, store)
    prediction = PredictionService(context, store, cache, adaptation)
    reports = ReportCache(REPORT_CACHE_TENANTS, settings.keep_versions)  # every retained version's report
    insight = InsightService(context, store, prediction, reports, settings.max_examples)
    description = EncoderDescription(
        name=name,
        default=default,
        dim=encoder.dim,
        fingerprint=encoder.fingerprint,
        checkpoint=None if checkpoint is None else Path(checkpoint).name,
        precision=_precision(encoder),
    )
    log.info(
        "encoder %s ready: source=%s fingerprint=%s checkpoint=%s device=%s",
        name,
        encoder.info.source,
        encoder.fingerprint,
        checkpoint,
        encoder.device,
    )
    return Tier(description, adaptation, prediction, insight), batcher


def build_runtime(
    settings: Settings, model: LoadedModel | None = None, tier_models: dict[str, LoadedModel] | None = None
) -> Runtime:
    """Everything a server process needs. `model` (the default tier's) and `tier_models` (by tier name) let
    tests share loaded encoders; the other served tiers are loaded from the settings."""
    names = settings.encoder_names()
    policy = thread_policy(settings)
    policy.before_loading()
    given = dict(tier_models or {})
    if model is not None:
        given.setdefault(names[0], model)
    models = {name: given[name] if name in given else load_tier_model(settings, name) for name in names}
    client = connect(settings.redis_url, settings.redis_timeout_s) if settings.store == "redis" else None
    store = build_store(
        settings.store,
        redis_url=settings.redis_url,
        prefix=settings.redis_prefix,
        ttl_s=settings.tenant_ttl_s,
        timeout_s=settings.redis_timeout_s,
        keep_versions=settings.keep_versions,
        client=client,
        wait_replicas=settings.redis_wait_replicas,
        wait_timeout_ms=settings.redis_wait_timeout_ms,
    )
    cache = HeadCache(settings.model_cache_size, max_bytes=int(settings.model_cache_mb * 2**20))
    shared = len(names) > 1 and settings.batching_enabled  # one OpenMP team for every tier's passes
    runner = PassRunner(policy.encoder) if shared else None
    built = [build_tier(name, models[name], settings, store, cache, i == 0, runner) for i, name in enumerate(names)]
    policy.after_encoders()  # each batcher (or the runner) has sized its own team
    tiers = Tiers([tier for tier, _ in built], store)
    default = tiers.default
    fingerprints = {tier.name: tier.description.fingerprint for tier, _ in built}
    forget = [tiers.forget]  # what a DELETE clears besides the decoded head: routing, then each tier's caches
    for tier, _ in built:
        forget += [
            tier.adaptation.context.embeddings.forget,
            tier.adaptation.context.pool_embeddings.forget,
            tier.insight.reports.forget,
            tier.prediction.evidence.forget,
        ]
    readiness = Readiness(
        encoder_fingerprint=default.description.fingerprint,
        checkpoint=default.description.checkpoint,
        store=settings.store,
    )
    log.info("runtime ready: encoders=%s store=%s", ",".join(names), settings.store)
    return Runtime(
        store=store,
        cache=cache,
        tenants=TenantService(store, cache, fingerprints, forget=forget),
        guard=build_access(settings, client),
        readiness=readiness,
        tiers=tiers,
        pools=UnlabeledService(
            store, settings.limits(), forget=[tier.adaptation.context.pool_embeddings.forget for tier, _ in built]
        ),
        batchers=[batcher for _, batcher in built if batcher is not None],
        redis_client=client,
        pass_runner=runner,
    )
