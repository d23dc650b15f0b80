"""Service settings, read from `FEWSHOT_*` environment variables (or a `.env` file).

Nothing here does work at import time; `Settings()` only parses the environment.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.ml import registry
from app.ml.packaged import PACKAGED_ENCODER, PACKAGED_ENCODER_SHA256
from app.ml.policy import Limits, OosRule
from app.ml.registry import (
    DEFAULT_ENCODER,
    DEFAULT_MODELS_DIR,
    MINILM,
    MPNET,
    SHIPPED_CHECKPOINT_DIR,
    EncoderSpec,
    InnerDefaults,
)

__all__ = [
    "DEPRECATED_ALIASES",
    "GROUPS",
    "PACKAGED_ENCODER",
    "PACKAGED_ENCODER_SHA256",
    "Settings",
    "TierOverride",
]

_LIMITS, _OOS = Limits(), OosRule()  # the defaults of those groups, written once in app/ml/policy.py

GROUPS: dict[str, tuple[str, ...]] = {
    "Encoders": (
        "encoders",
        "tiers",
        "models_dir",
        "device",
        "max_tokens",
        "embed_batch_size",
        "quantize_int8",
        "encoder_precision",
        "compile_encoder",
        "trace_encoder",
        "onednn_cache_capacity",
        "torch_threads",
    ),
    "Batching": (
        "batching_enabled",
        "batch_max_texts",
        "batch_max_wait_ms",
        "batch_linger_ms",
        "batch_max_tokens",
        "batch_chunk_tokens",
    ),
    "Inner loop": ("inner_steps", "inner_lr", "logit_scale"),
    "Out-of-scope": ("oos_quantile", "oos_fallback_threshold"),
    "Caches": ("embedding_cache_size", "pool_cache_size", "model_cache_size", "model_cache_mb"),
    "Store": (
        "store",
        "redis_url",
        "redis_prefix",
        "redis_timeout_s",
        "redis_wait_replicas",
        "redis_wait_timeout_ms",
        "tenant_ttl_s",
        "keep_versions",
    ),
    "Request limits": (
        "max_examples",
        "max_labels",
        "max_texts",
        "max_text_chars",
        "max_label_chars",
        "max_top_k",
        "max_unlabeled",
    ),
    "Admission": ("heavy_slots", "heavy_per_tenant", "heavy_queue_per_tenant", "max_body_bytes"),
    "Access": ("auth_enabled", "admin_key", "admin_key_sha256", "rate_limit_requests", "rate_limit_window_s"),
    "Logging and metrics": ("log_format", "log_level", "log_payloads", "metrics_enabled"),
    "Server": (
        "host",
        "port",
        "request_timeout_s",
        "timeout_keep_alive_s",
        "http_parser",
        "limit_concurrency",
        "malloc_trim_interval_s",
    ),
}
"""The settings by group, in declaration order (each group one `# ---` section of `Settings`); the generated
docs/configuration.md has a table per group."""

DEPRECATED_ALIASES: dict[str, tuple[str, str]] = {
    "encoder_source": (MINILM.name, "source"),
    "encoder_sha256": (MINILM.name, "sha256"),
    "checkpoint": (MINILM.name, "checkpoint"),
    "mpnet_source": (MPNET.name, "source"),
    "mpnet_sha256": (MPNET.name, "sha256"),
    "mpnet_checkpoint": (MPNET.name, "checkpoint"),
}
"""Deprecated settings (`FEWSHOT_` + upper-cased key) -> (tier, override field): `FEWSHOT_CHECKPOINT` is
`FEWSHOT_TIERS__MINILM__CHECKPOINT`. The generic override wins when both are set."""


class TierOverride(BaseModel):
    """What settings may change of a registered tier's spec (`FEWSHOT_TIERS__<NAME>__<FIELD>`); unset = the spec's."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(None, description="Base encoder: `package:<name>`, a local folder or a hub id.")
    sha256: str | None = Field(
        None,
        description="Expected weights sha256: `pinned` (the hash pinned for a packaged source; a folder or hub id "
        "is then not checked), empty (no check), or a hex digest.",
    )
    checkpoint: str | None = Field(None, description="Meta-trained checkpoint folder, or `none`.")
    inner_steps: int | None = Field(None, ge=0, le=200, description="Inner-loop SGD steps without a checkpoint.")
    inner_lr: float | None = Field(None, gt=0, description="Inner-loop learning rate without a checkpoint.")
    logit_scale: float | None = Field(None, gt=0, description="Inverse temperature without a checkpoint.")


class _DeprecatedEnv(PydanticBaseSettingsSource):
    """The deprecated aliases from the process environment (those in a `.env` file reach the validator as
    extras)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", ""))
        env = {key.lower(): value for key, value in os.environ.items()}
        return {
            alias: env[f"{prefix}{alias}".lower()] for alias in DEPRECATED_ALIASES if f"{prefix}{alias}".lower() in env
        }


class Settings(BaseSettings):
    """Every knob of the service, declared in the groups of `GROUPS` (one `# ---` section each). Env var =
    `FEWSHOT_` + upper-cased field name (nested: `__`). Where a lower layer takes a group as one typed object, the
    defaults come from that object's dataclass and one method builds it (`limits()`, `oos_rule()`)."""

    model_config = SettingsConfigDict(env_prefix="FEWSHOT_", env_file=".env", extra="ignore", env_nested_delimiter="__")

    # --- encoders ------------------------------------------------------------------------------
    encoders: str = Field(
        DEFAULT_ENCODER,
        description="Encoder tiers this process serves (names from `app/ml/registry.py`: "
        f"{', '.join(f'`{name}`' for name in registry.names())}), comma-separated; the first is the default for new "
        "tenants (`/adapt` takes `encoder`).",
    )
    tiers: dict[str, TierOverride] = Field(
        default_factory=dict,
        description="Per-tier overrides of the registry's specs: `FEWSHOT_TIERS__<NAME>__SOURCE` (package, folder "
        "or hub id), `__SHA256` (`pinned`, empty = no check, or a digest), `__CHECKPOINT` (folder or `none`), "
        "`__INNER_STEPS`, `__INNER_LR`, `__LOGIT_SCALE` (the inner loop without a checkpoint). "
        "E.g. `FEWSHOT_TIERS__MPNET__CHECKPOINT=/models/mpnet-protomaml`.",
    )
    models_dir: str = Field(
        str(DEFAULT_MODELS_DIR),
        description="Where encoders shipped in parts (`package:all-mpnet-base-v2`, the `mpnet` extra) are "
        "assembled once and verified.",
    )
    device: str = Field("auto", description="`auto` (cuda when available, else cpu), `cpu` or `cuda[:n]`.")
    max_tokens: int = Field(128, ge=8, le=512, description="Texts are truncated to this many tokens.")
    embed_batch_size: int = Field(64, ge=1, le=1024, description="Texts per encoder forward pass.")
    quantize_int8: bool = Field(
        False, description="Int8 dynamic quantization of the encoder's linear layers (CPU); changes the fingerprint."
    )
    encoder_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Serving precision of the encoder: `auto` = bfloat16 on CPUs with native bf16 math "
        "(AVX512-BF16/AMX), else float32. Throughput and accuracy of each: `bench/cpu_speedups.py`.",
    )
    compile_encoder: bool = Field(
        False,
        description="torch.compile(dynamic=True) the encoder at startup (slower start; `bench/cpu_speedups.py` "
        "measures the gain).",
    )
    trace_encoder: bool = Field(
        True,
        description="Embed through a TorchScript trace of the encoder, checked against the eager encoder at "
        "startup (same embeddings, same fingerprint; `bench/cpu_speedups.py` measures the gain). Ignored with "
        "`quantize_int8` or `compile_encoder`.",
    )
    onednn_cache_capacity: int = Field(
        16,
        ge=0,
        description="oneDNN primitive cache entries (bounds RSS under varied batch shapes); 0 keeps oneDNN's default.",
    )
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 keeps torch's default.")

    # --- batching (app/ml/batching.py) ---------------------------------------------------------
    batching_enabled: bool = Field(True, description="Merge concurrent embed calls of all tenants into shared passes.")
    batch_max_texts: int = Field(128, ge=1, le=4096, description="Most texts in one merged encoder pass.")
    batch_max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="How long every pass waits for more requests after the first arrives, under load or not (a "
        "lone request too); 0 = none (arrivals during a pass share the next). Under load a pass waits the longer "
        "of this and `batch_linger_ms`.",
    )
    batch_linger_ms: float = Field(
        12.0,
        ge=0,
        le=1000,
        description="Under load only (the last merged pass served several requests), how long at most a pass waits "
        "for more requests: it starts as soon as the requests arriving since the last pass pause for 1 ms (or "
        "`batch_max_texts` wait). Bigger passes, more texts/s; only steady arrivals wait this long. A lone request "
        "never waits; 0 = off.",
    )
    batch_max_tokens: int = Field(
        4096,
        ge=128,
        le=65536,
        description="Most estimated tokens in one merged encoder pass (about one per 4 UTF-8 bytes of text, at most "
        "`max_tokens` a text): bounds how long any request waits for the pass running ahead of it.",
    )
    batch_chunk_tokens: int = Field(
        2048,
        ge=128,
        le=65536,
        description="Requests are cut into chunks of at most this many estimated tokens, which passes take in "
        "turn: one bulk chunk (/adapt, /evaluate, /suggest) per pass while any waits, then /predict chunks, then "
        "more bulk, each round-robin over tenants (docs/fair_sharing.md).",
    )

    # --- inner loop (defaults; a checkpoint's meta-learned values take precedence) -------------
    # each tier's own were chosen on BANKING77's train split by bench/tune_inner_loop.py (bench/results/)
    inner_steps: int | None = Field(
        None,
        ge=0,
        le=200,
        description="SGD steps of the default tier's inner loop in /adapt without a checkpoint; unset: the tier's "
        "own (`FEWSHOT_TIERS__<NAME>__INNER_STEPS` wins).",
    )
    inner_lr: float | None = Field(
        None,
        gt=0,
        description="The default tier's inner-loop learning rate per label (the loss is summed over labels) without "
        "a checkpoint; unset: the tier's own.",
    )
    logit_scale: float | None = Field(
        None, gt=0, description="The default tier's inverse temperature when no checkpoint sets one; unset: its own."
    )

    # --- out-of-scope: `oos_rule()` -> OosRule -------------------------------------------------
    oos_quantile: float = Field(
        _OOS.quantile,
        ge=0,
        le=0.5,
        description="Out-of-scope threshold = this quantile of leave-one-out support similarities.",
    )
    oos_fallback_threshold: float | None = Field(
        _OOS.fallback,
        ge=-1,
        le=1,
        description="Threshold for tenants with no label holding 2 examples; empty = no OOS.",
    )

    # --- caches (per process) ------------------------------------------------------------------
    embedding_cache_size: int = Field(
        20000, ge=0, description="Support-text embeddings kept per process for re-adaptation (LRU)."
    )
    pool_cache_size: int = Field(
        20000,
        ge=0,
        description="Embeddings of tenants' unlabeled texts kept per process and tier (LRU, apart from the support "
        "texts'): an /adapt that fits with a pool embeds only its new texts.",
    )
    model_cache_size: int = Field(1024, ge=0, description="Decoded tenant heads kept per process (LRU).")
    model_cache_mb: float = Field(256.0, gt=0, description="Most memory (MiB) the decoded-head LRU may hold.")

    # --- store ---------------------------------------------------------------------------------
    store: Literal["memory", "redis"] = Field("memory", description="Where tenant models live.")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis connection URL (store=redis). A Redis Cluster: `redis+cluster://[user:password@]host:port"
        "[,host:port...]` (TLS: `rediss+cluster://`), seed nodes from which the client discovers the cluster.",
    )
    redis_prefix: str = Field("fewshot", description="Namespace prefix of every Redis key.")
    redis_timeout_s: float = Field(2.0, gt=0, description="Redis connect and socket timeout.")
    redis_wait_replicas: int = Field(
        0,
        ge=0,
        description="Replicas that must confirm each write (adapt, rollback, delete, unlabeled texts) before it is "
        "acknowledged (Redis `WAIT`); 0 = acknowledge once the primary has it (a failover may lose the last writes).",
    )
    redis_wait_timeout_ms: int = Field(
        1000, ge=1, description="How long a write waits for `redis_wait_replicas` confirmations; then 503."
    )
    tenant_ttl_s: int | None = Field(None, ge=1, description="Expire tenants this long after their last adapt.")
    keep_versions: int = Field(5, ge=1, le=100, description="Versions of each tenant's model kept for rollback.")

    # --- request limits: `limits()` -> Limits --------------------------------------------------
    max_examples: int = Field(_LIMITS.max_examples, ge=2, description="Most examples in one /adapt request.")
    max_labels: int = Field(_LIMITS.max_labels, ge=2, description="Most distinct labels per tenant.")
    max_texts: int = Field(_LIMITS.max_texts, ge=1, description="Most texts in one /predict request.")
    max_text_chars: int = Field(_LIMITS.max_text_chars, ge=1, description="Longest text accepted, in characters.")
    max_label_chars: int = Field(_LIMITS.max_label_chars, ge=1, description="Longest label accepted, in characters.")
    max_top_k: int = Field(_LIMITS.max_top_k, ge=1, description="Largest top_k accepted by /predict.")
    max_unlabeled: int = Field(
        _LIMITS.max_unlabeled,
        ge=1,
        description="Most texts kept in one tenant's unlabeled pool (POST /tenants/{id}/unlabeled); the oldest "
        "go first.",
    )

    # --- admission (app/web) -------------------------------------------------------------------
    heavy_slots: int = Field(
        4,
        ge=1,
        le=64,
        description="Heavy requests (/adapt, /tenants/{id}/evaluate, /tenants/{id}/suggest) that run at once in a "
        "process; the others wait their turn without holding a thread.",
    )
    heavy_per_tenant: int = Field(
        2, ge=1, le=64, description="Of those, the most one tenant may run at once (its others wait behind them)."
    )
    heavy_queue_per_tenant: int = Field(
        64,
        ge=0,
        le=1024,
        description="Heavy requests of one tenant that may wait for a turn; beyond, 429 `tenant_busy` (Retry-After).",
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest request body, counted on the streamed bytes (413 above)."
    )

    # --- access (app/access) -------------------------------------------------------------------
    auth_enabled: bool = Field(
        False, description="Require `Authorization: Bearer <key>` on every non-public route (on in docker compose)."
    )
    admin_key: SecretStr | None = Field(
        None, description="Bootstrap admin API key in clear; only its sha256 is kept in memory."
    )
    admin_key_sha256: str | None = Field(
        None, description="sha256 (hex) of the bootstrap admin API key; preferred over `admin_key`."
    )
    rate_limit_requests: int = Field(
        0, ge=0, description="Requests per API key (client address when auth is off) per window; 0 disables."
    )
    rate_limit_window_s: int = Field(60, ge=1, description="Length of the fixed rate-limit window, in seconds.")

    # --- logging and metrics (app/web) ---------------------------------------------------------
    log_format: Literal["text", "json"] = Field("text", description="`json`: one JSON object per log line.")
    log_level: str = Field("info", description="Log level.")
    log_payloads: bool = Field(False, description="Also log request bodies (texts and labels); off by default.")
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at `/metrics`.")

    # --- server (`fewshot serve`: app/cli.py, app/web/server.py) -------------------------------
    host: str = Field("127.0.0.1", description="Bind address of `fewshot serve`.")
    port: int = Field(8000, ge=1, le=65535, description="Port of `fewshot serve`.")
    request_timeout_s: float = Field(
        30.0, gt=0, description="A client must send a whole request (headers and body) within this many seconds."
    )
    timeout_keep_alive_s: int = Field(5, ge=1, description="Idle keep-alive connections close after this long.")
    http_parser: Literal["auto", "httptools", "h11"] = Field(
        "auto",
        description="HTTP parser of `fewshot serve`: `auto` or `httptools` = httptools (C), `h11` = h11 (pure Python).",
    )
    limit_concurrency: int | None = Field(
        None, ge=1, description="Most concurrent connections/requests before answering 503 (none = unbounded)."
    )
    malloc_trim_interval_s: float = Field(
        1.0, ge=0, description="`fewshot serve`: return free glibc heap pages to the OS this often; 0 = never."
    )

    def limits(self) -> Limits:
        """The request-limits group as the services take it."""
        return Limits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Limits)})

    def oos_rule(self) -> OosRule:
        """The out-of-scope group as tenant fitting takes it."""
        return OosRule(quantile=self.oos_quantile, fallback=self.oos_fallback_threshold)

    @field_validator("oos_fallback_threshold", mode="before")
    @classmethod
    def _empty_means_no_oos(cls, value: object) -> object:
        """`FEWSHOT_OOS_FALLBACK_THRESHOLD=` (empty) is documented as "no OOS"."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="before")
    @classmethod
    def _map_deprecated_aliases(cls, data: Any) -> Any:
        """Each deprecated alias given (env, `.env` or keyword) becomes its tier's override, unless that is set."""
        if not isinstance(data, dict) or not any(alias in data for alias in DEPRECATED_ALIASES):
            return data
        data = dict(data)
        tiers = {name: dict(_as_dict(value)) for name, value in _as_dict(data.get("tiers") or {}).items()}
        for alias, (tier, key) in DEPRECATED_ALIASES.items():
            if alias in data:
                value = data.pop(alias)
                tiers.setdefault(tier, {}).setdefault(key, value)
        data["tiers"] = tiers
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _DeprecatedEnv(settings_cls), dotenv_settings, file_secret_settings

    def encoder_names(self) -> list[str]:
        """The served encoder tiers, the default first."""
        return [name.strip() for name in self.encoders.split(",") if name.strip()]

    @field_validator("encoders")
    @classmethod
    def _known_encoders(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        known = registry.names()
        unknown = [name for name in names if name not in known]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(f"encoders must list distinct names from {', '.join(known)}; got {value!r}")
        return ",".join(names)

    @field_validator("tiers")
    @classmethod
    def _known_tiers(cls, value: dict[str, TierOverride]) -> dict[str, TierOverride]:
        value = {name.lower(): override for name, override in value.items()}
        unknown = sorted(set(value) - set(registry.names()))
        if unknown:
            raise ValueError(f"overrides of unknown encoders {unknown}; registered: {', '.join(registry.names())}")
        return value

    def tier(self, name: str) -> EncoderSpec:
        """The registry's spec of `name` with this process's overrides applied, resolved for loading: `sha256` is
        the hash to check (None: none), `checkpoint` the folder to apply (None: none; the spec's own default
        counts only where it exists)."""
        base = registry.spec(name)
        override = self.tiers.get(name, TierOverride())
        source = override.source if override.source is not None else base.source
        if override.sha256 is not None:
            sha256 = _expected_sha256(source, override.sha256)
        else:  # `pinned`: the spec's own hash for its own source
            sha256 = base.sha256 if source == base.source else registry.pinned_sha256(source)
        checkpoint = base.checkpoint if base.checkpoint is not None and base.checkpoint.exists() else None
        if override.checkpoint is not None:
            checkpoint = _checkpoint(override.checkpoint)
        default = name == self.encoder_names()[0]
        inner = InnerDefaults(
            _first(override.inner_steps, self.inner_steps if default else None, base.inner.steps),
            _first(override.inner_lr, self.inner_lr if default else None, base.inner.lr),
            _first(override.logit_scale, self.logit_scale if default else None, base.inner.logit_scale),
        )
        return dataclasses.replace(base, source=source, sha256=sha256, checkpoint=checkpoint, inner=inner)


def _as_dict(value: Any) -> dict[str, Any]:
    return value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else dict(value)


def _first(*values: Any) -> Any:
    return next(value for value in values if value is not None)


def _checkpoint(value: str) -> Path | None:
    """A checkpoint setting: `none` or empty -> None; the shipped default folder -> None where it is absent."""
    if value.strip().lower() in {"", "none"}:
        return None
    path = Path(value)
    return None if path == SHIPPED_CHECKPOINT_DIR and not path.exists() else path


def _expected_sha256(source: str, value: str) -> str | None:
    value = value.strip()
    if value.lower() == "pinned":
        return registry.pinned_sha256(source)
    return value or None
