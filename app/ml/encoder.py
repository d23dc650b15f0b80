"""The shared sentence encoder: transformer + mean pooling + L2 normalisation.

Reproduces `SentenceTransformer.encode` for all-MiniLM-L6-v2. Loads offline from a packaged source
(`package:<name>`, located by the spec that ships it in `app.ml.registry`), from a folder, or from a hub id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from app.ml.integrity import EncoderIntegrityError, sha256_file
from app.ml.registry import MEAN_L2, PACKAGE_PREFIX, package_folder

__all__ = ["EncoderIntegrityError", "SentenceEncoder", "load_encoder", "resolve_source", "sha256_file"]

POOLING = MEAN_L2
GRAPH_TOLERANCE = 1e-5  # largest difference allowed between traced and eager embeddings (unit vectors)
PROBE_TEXTS = (
    "ok",
    "I still have not received my new card, can you check where it is?",
    "how do I top up",
    "Which currencies can I hold, and what are the fees for exchanging between them on weekends? " * 12,
)  # short, padded and truncated (> max_tokens) batches: what the trace is checked on
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderInfo:
    """Where the base weights came from and what they hash to."""

    source: str
    weights_sha256: str
    dim: int


def resolve_source(source: str, models_dir: Path | None = None) -> Path | str:
    """Map an encoder source to a local folder (package or path) or leave a hub id as is.

    `models_dir`: where encoders shipped in parts are assembled (default `~/.cache/fewshot/models`)."""
    if source.startswith(PACKAGE_PREFIX):
        return package_folder(source, models_dir)
    path = Path(source)
    return path if path.exists() else source


def _weights_file(folder: Path | str) -> Path:
    if isinstance(folder, Path):
        return folder / "model.safetensors"
    from huggingface_hub import hf_hub_download  # only for hub ids, i.e. online users

    return Path(hf_hub_download(folder, "model.safetensors"))


def mean_pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors that are not padding."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    summed = (token_embeddings * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1e-9)


class SentenceEncoder(nn.Module):
    """Texts -> unit-norm sentence embeddings. `forward` is differentiable; `embed` is inference."""

    def __init__(
        self,
        transformer: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        info: EncoderInfo,
        max_tokens: int = 128,
        prefix: str = "",
    ) -> None:
        super().__init__()
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.info = info
        self.max_tokens = max_tokens
        self.prefix = prefix  # prepended to every text before tokenizing (e5's "query: "); part of the fingerprint
        self.delta_sha256: str | None = None  # set when a meta-trained checkpoint is applied
        self.quantized = False  # int8 dynamic quantization of the linear layers (CPU serving)
        self.inference_graph: torch.jit.ScriptModule | None = None  # `embed`'s trace (`trace_inference_graph`)
        self._embed_lock = threading.Lock()  # fast tokenizers are not safe for concurrent calls

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def fingerprint(self) -> str:
        """Stable id of (base weights, checkpoint delta, pooling): models adapted under another one are stale.
        Hashed once per combination (every /predict reads it)."""
        return _fingerprint(self.info.weights_sha256, self.delta_sha256, self.quantized, self.prefix)

    def token_estimate(self, text: str) -> int:
        """Tokens `text` is expected to take in a pass, without tokenizing it: about one per 4 UTF-8 bytes (an
        English word, a CJK character) plus the two special tokens, at most `max_tokens`. The micro-batcher sizes
        its passes with it."""
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        return min(self.max_tokens, (size + len(self.prefix)) // 4 + 2)

    def prefixed(self, texts: Sequence[str]) -> list[str]:
        """The texts as the tokenizer sees them: with the encoder's prefix, if any."""
        return [self.prefix + text for text in texts] if self.prefix else list(texts)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            self.prefixed(texts),
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        return {key: value.to(self.device) for key, value in batch.items()}

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Differentiable embeddings `[len(texts), dim]` (used by meta-training)."""
        return self.encode_batch(self.tokenize(texts))

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Inference embeddings on CPU, `[len(texts), dim]`.

        Texts are tokenized once, sorted by token count and cut into passes by `length_groups`, so
        that short texts are not padded to the longest one of the call.
        """
        if not texts:
            return torch.empty(0, self.dim)
        out = torch.empty(len(texts), self.dim)
        with self._embed_lock:
            token_ids = self.tokenizer(self.prefixed(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
            order = sorted(range(len(texts)), key=lambda i: len(token_ids[i]))
            was_training = self.training
            if was_training:  # `train()` walks every submodule: ~20 % of a one-text pass when done every call
                self.eval()
            for group in length_groups([len(token_ids[i]) for i in order], batch_size):
                idx = [order[k] for k in group]
                batch = self.tokenizer.pad({"input_ids": [token_ids[i] for i in idx]}, return_tensors="pt")
                out[idx] = self._encode_for_inference(dict(batch)).cpu()
            if was_training:
                self.train()
        return out

    def encode_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled, unit-norm embeddings of an already tokenized batch (the eager transformer: differentiable)."""
        batch = {key: value.to(self.device) for key, value in batch.items()}
        output = self.transformer(**batch)
        return _pooled(output.last_hidden_state, batch["attention_mask"])

    def _encode_for_inference(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """`encode_batch` through the trace when there is one (same numbers, less per-pass overhead)."""
        if self.inference_graph is None:
            return self.encode_batch(batch)
        ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        return _pooled(self.inference_graph(ids, mask), mask)


def _pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(mean_pool(hidden.float(), attention_mask), p=2, dim=-1)


class _LastHiddenState(nn.Module):
    """The transformer as (input ids, attention mask) -> last hidden state: the signature that is traced."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.transformer(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]


def trace_inference_graph(encoder: SentenceEncoder) -> bool:
    """Serve `embed` from a TorchScript trace of the transformer; True when it is used.

    The transformers forward runs hundreds of Python-level module calls, wrappers and signature checks per pass:
    most of a one-text pass on CPU. The trace replays the same aten ops without them (`bench.cpu_speedups`: one
    text 6.0 -> 3.5 ms, 646 -> 779 texts/s in batches of 64). A trace records one example's control flow, so it is
    used only if it reproduces the eager embeddings (within `GRAPH_TOLERANCE`) on single, padded and truncated
    probe batches; otherwise `embed` stays eager and this says why in the log. The fingerprint is unchanged:
    the numbers are the same. The trace shares the transformer's weights (no copy; freezing it measured no
    faster) but not its modules: call it after any module is replaced (precision, int8).
    `torch.jit.trace` is deprecated in favour of `torch.export` (measured: no gain at one text); its warnings are
    silenced here, and torch is pinned.
    """
    was_training = encoder.training
    encoder.eval()
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent branches, deprecation notices
            example = encoder.tokenizer(list(PROBE_TEXTS[:3]), padding=True, return_tensors="pt")
            args = (example["input_ids"].to(encoder.device), example["attention_mask"].to(encoder.device))
            graph = torch.jit.trace(_LastHiddenState(encoder.transformer).eval(), args)  # shares the weights
            worst = _largest_difference(encoder, graph)
    except Exception as exc:  # any tracing failure leaves the eager encoder in place
        log.warning("encoder trace failed, serving the eager encoder: %s", exc)
        return False
    finally:
        encoder.train(was_training)
    if worst > GRAPH_TOLERANCE:
        log.warning("encoder trace differs from the eager encoder by %.2e; serving the eager encoder", worst)
        return False
    encoder.inference_graph = graph
    return True


def _largest_difference(encoder: SentenceEncoder, graph: torch.jit.ScriptModule) -> float:
    """Largest absolute difference between eager and traced embeddings over the probe batches."""
    worst = 0.0
    for texts in ([PROBE_TEXTS[0]], [PROBE_TEXTS[3]], list(PROBE_TEXTS), list(PROBE_TEXTS[1:3])):
        batch = dict(
            encoder.tokenizer(texts, padding=True, truncation=True, max_length=encoder.max_tokens, return_tensors="pt")
        )
        batch.pop("token_type_ids", None)  # `embed` pads input ids only
        eager = encoder.encode_batch(batch)
        mask = batch["attention_mask"].to(encoder.device)
        traced = _pooled(graph(batch["input_ids"].to(encoder.device), mask), mask)
        worst = max(worst, float((eager - traced).abs().max()))
    return worst


@lru_cache(maxsize=64)
def _fingerprint(weights_sha256: str, delta_sha256: str | None, quantized: bool, prefix: str = "") -> str:
    extras = ({"int8": True} if quantized else {}) | ({"prefix": prefix} if prefix else {})
    payload = json.dumps({"base": weights_sha256, "delta": delta_sha256, "pooling": POOLING} | extras, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


PASS_OVERHEAD_TOKENS = 48
"""Cost of one extra encoder pass, in padded tokens (MiniLM-L6 on CPU: ~8 ms per pass, ~0.15 ms per token)."""


def length_groups(sorted_lengths: Sequence[int], max_size: int, overhead: int = PASS_OVERHEAD_TOKENS) -> list[range]:
    """Cut ascending token counts into contiguous passes of at most `max_size` texts.

    A text joins the current pass unless the padding it adds to the texts already there
    (`n * (its length - current max)`) costs more than starting a new pass (`overhead` tokens).
    """
    groups: list[range] = []
    start, longest = 0, 0
    for i, length in enumerate(sorted_lengths):
        size = i - start
        if size and (size >= max_size or size * (length - longest) > overhead):
            groups.append(range(start, i))
            start = i
        longest = length
    if len(sorted_lengths) > start:
        groups.append(range(start, len(sorted_lengths)))
    return groups


def quantize_int8(encoder: SentenceEncoder) -> SentenceEncoder:
    """Int8 dynamic quantization of the transformer's linear layers (CPU inference only; no gradients)."""
    encoder.transformer = torch.ao.quantization.quantize_dynamic(encoder.transformer, {nn.Linear}, dtype=torch.qint8)
    encoder.quantized = True
    return encoder


def use_bf16(encoder: SentenceEncoder) -> SentenceEncoder:
    """bfloat16 weights and activations for serving (pooling stays float32); no gradients needed.

    A converted copy rather than `torch.autocast`: with torch 2.13 on CPU, autocast under
    `inference_mode` left later float32 passes of the same module non-deterministic.
    """
    encoder.transformer = encoder.transformer.to(torch.bfloat16)
    return encoder


def bf16_is_fast() -> bool:
    """Whether this CPU has native bfloat16 math (AVX512-BF16 / AMX); elsewhere bf16 is emulated and slower."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def pick_device(device: str) -> torch.device:
    """`auto` -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_encoder(
    source: str,
    expected_sha256: str | None,
    max_tokens: int = 128,
    device: str = "auto",
    attn_implementation: str | None = None,
    models_dir: Path | None = None,
    prefix: str = "",
) -> SentenceEncoder:
    """Load and verify the base encoder.

    `attn_implementation`: None lets transformers pick (`sdpa` where the model type has it, else `eager`); a
    tier's spec names what it needs. `eager` is also needed for second-order gradients on CPU (SDPA has no
    double-backward there). `prefix`: prepended to every text (`SentenceEncoder.prefix`). Raises
    `EncoderIntegrityError` when the weights' sha256 differs.
    """
    location = resolve_source(source, models_dir)
    weights = _weights_file(location)
    actual = sha256_file(weights)
    if expected_sha256 and actual != expected_sha256.lower():
        raise EncoderIntegrityError(
            f"encoder weights {weights} have sha256 {actual}, expected {expected_sha256}; "
            "refusing to load (set the tier's expected sha256 to the new hash if this is intended)"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(location))
    transformer = AutoModel.from_pretrained(str(location), attn_implementation=attn_implementation)
    transformer.float().to(pick_device(device)).eval()  # float32 even when the file holds half precision
    info = EncoderInfo(source=source, weights_sha256=actual, dim=int(transformer.config.hidden_size))
    return SentenceEncoder(transformer, tokenizer, info, max_tokens=max_tokens, prefix=prefix).eval()
