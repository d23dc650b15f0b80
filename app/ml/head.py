"""A tenant's adapted head: labels + linear layer + temperature + out-of-scope rule, and its codec.

Single-label heads score with a softmax over labels; multi-label heads (`task = "multi_label"`) with a
sigmoid per label, each compared with the label's own threshold (`thresholds`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from app.ml.learner import HeadTensors, normed_features
from app.ml.multilabel_decision import applies

HEAD_SCHEMA = "2"  # int8 rows + per-row scales (the only schema the service ever released)
FLOAT16_MAX = 65504.0
SINGLE_LABEL, MULTI_LABEL = "single_label", "multi_label"
TASKS = (SINGLE_LABEL, MULTI_LABEL)


class HeadDecodeError(ValueError):
    """Bytes that are not a head we wrote (truncated, tampered with, other schema)."""


@dataclass(frozen=True, eq=False)
class Int8Rows:
    """A matrix stored as int8 with one float16-exact scale per row: `row = values * scale` (symmetric).

    About 1 byte per number: a 384-dim head row costs 386 bytes instead of 768 (float16). Relative
    error per row is at most 1/254 of its largest entry (plus 1/2048 from the scale's float16
    rounding); BANKING77 accuracy is unchanged (see `bench/cpu_speedups.py`).
    """

    values: torch.Tensor  # int8 [n, dim]
    scales: torch.Tensor  # float32 [n], each exactly representable in float16 (stored as float16)

    @classmethod
    def quantize(cls, matrix: torch.Tensor) -> Int8Rows:
        matrix = matrix.detach().float().cpu()
        scales = (matrix.abs().amax(dim=1) / 127.0).clamp(max=FLOAT16_MAX).half().float()
        safe = torch.where(scales > 0, scales, torch.ones_like(scales))
        values = torch.round(matrix / safe.unsqueeze(1)).clamp(-127, 127).to(torch.int8)
        return cls(values.contiguous(), scales.contiguous())

    def dequantize(self) -> torch.Tensor:
        return self.values.float() * self.scales.unsqueeze(1)

    @cached_property
    def dense(self) -> torch.Tensor:
        """The float32 matrix, dequantised once on first use and kept: the form the serving maths needs (a cached
        head answers many requests; dequantising per request cost ~17 % of a one-text /predict)."""
        return self.dequantize().contiguous()

    def matmul_t(self, x: torch.Tensor) -> torch.Tensor:
        """`x @ self.dequantize().T`."""
        return x.float() @ self.dense.T

    @property
    def nbytes(self) -> int:
        """Bytes of the int8 form (what is stored)."""
        return self.values.numel() + 4 * self.scales.numel()

    @property
    def serving_nbytes(self) -> int:
        """Bytes held once the matrix serves: the int8 form plus its float32 copy."""
        return self.nbytes + 4 * self.values.numel()

    @property
    def shape(self) -> torch.Size:
        return self.values.shape

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Int8Rows)
            and torch.equal(self.values, other.values)
            and torch.equal(self.scales, other.scales)
        )


@dataclass(eq=False)
class TenantHead:
    """Everything needed to score embeddings for one tenant (as stored: what is served is what is saved)."""

    labels: list[str]
    weight: Int8Rows  # [n_labels, dim] linear layer
    bias: torch.Tensor  # [n_labels], float32
    scale: float  # inverse temperature applied to the logits
    prototypes: Int8Rows  # [n_labels, dim], unit-norm class means, for out-of-scope scores
    oos_threshold: float | None  # below this prototype similarity a text is out of scope; None = off
    norm_gain: torch.Tensor | None = None  # [dim] adapted last-layer norm (float16 values), if the inner loop adapts it
    norm_shift: torch.Tensor | None = None  # [dim]
    thresholds: torch.Tensor | None = None  # [n_labels] multi-label only: a label applies when its score >= this
    min_labels: int = 0  # multi-label only: 1 = each text's top-scoring label applies as well

    @classmethod
    def from_tensors(
        cls,
        labels: list[str],
        head: HeadTensors,
        scale: float,
        prototypes: torch.Tensor,
        oos_threshold: float | None,
        thresholds: torch.Tensor | None = None,
        min_labels: int = 0,
    ) -> TenantHead:
        return cls(
            labels=list(labels),
            weight=Int8Rows.quantize(head.weight),
            bias=head.bias.detach().float().cpu().contiguous(),
            scale=float(scale),
            prototypes=Int8Rows.quantize(prototypes),
            oos_threshold=oos_threshold,
            norm_gain=_float16_values(head.norm_gain),
            norm_shift=_float16_values(head.norm_shift),
            thresholds=None if thresholds is None else thresholds.detach().float().cpu().contiguous(),
            min_labels=min_labels,
        )

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    @property
    def task(self) -> str:
        return SINGLE_LABEL if self.thresholds is None else MULTI_LABEL

    @property
    def multi_label(self) -> bool:
        return self.thresholds is not None

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Scaled logits `[n, n_labels]`."""
        features = normed_features(embeddings.float(), self.norm_gain, self.norm_shift)
        return self.scale * (self.weight.matmul_t(features) + self.bias)

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """`[n, n_labels]`: softmax over labels (single-label) or one sigmoid per label (multi-label)."""
        logits = self.logits(embeddings)
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    def applying(self, scores: torch.Tensor, override: float | None = None) -> torch.Tensor:
        """Multi-label: bool `[n, n_labels]`, the labels that apply given `scores`; `override` replaces every
        threshold and the top-label rule (the plain threshold decision)."""
        assert self.thresholds is not None
        if override is not None:
            return scores >= override
        return applies(scores, self.thresholds, self.min_labels)

    def probabilities(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Softmax over labels, `[n, n_labels]`."""
        return torch.softmax(self.logits(embeddings), dim=-1)

    def oos_scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Similarity to the nearest label prototype, `[n]` (embeddings are unit-norm); compare with `oos_threshold`."""
        return self.prototypes.matmul_t(embeddings).max(dim=-1).values

    def to_bytes(self) -> bytes:
        """safetensors bytes; labels, scale and threshold ride in the header metadata (JSON strings)."""
        metadata = {
            "schema": HEAD_SCHEMA,
            "labels": json.dumps(self.labels, ensure_ascii=False, separators=(",", ":")),
            "scale": repr(self.scale),
            "oos_threshold": json.dumps(self.oos_threshold),
        }
        tensors = {
            "weight": self.weight.values,
            "weight_scale": self.weight.scales.half(),  # exact: quantize rounds scales to float16
            "bias": self.bias,
            "prototypes": self.prototypes.values,
            "prototypes_scale": self.prototypes.scales.half(),
        }
        if self.norm_gain is not None and self.norm_shift is not None:
            tensors |= {"norm_gain": self.norm_gain.half(), "norm_shift": self.norm_shift.half()}
        if self.thresholds is not None:  # single-label heads keep the bytes they always had
            metadata["task"] = MULTI_LABEL
            tensors["thresholds"] = self.thresholds
            if self.min_labels:  # heads without the top-label rule keep the bytes they always had
                metadata["min_labels"] = str(self.min_labels)
        return st_save(tensors, metadata=metadata)

    @classmethod
    def from_bytes(cls, data: bytes) -> TenantHead:
        """Inverse of `to_bytes`; raises `HeadDecodeError` on anything malformed."""
        try:
            tensors = st_load(data)
            metadata = _read_metadata(data)
            schema = metadata.get("schema")
            if schema != HEAD_SCHEMA:
                raise HeadDecodeError(f"head schema {schema!r}, expected {HEAD_SCHEMA!r}")
            weight = _int8_rows(tensors["weight"], tensors["weight_scale"])
            prototypes = _int8_rows(tensors["prototypes"], tensors["prototypes_scale"])
            labels = json.loads(metadata["labels"])
            threshold = json.loads(metadata["oos_threshold"])
            task = metadata.get("task", SINGLE_LABEL)
            if task not in TASKS or (task == MULTI_LABEL) != ("thresholds" in tensors):
                raise HeadDecodeError(f"head task {task!r} and its tensors disagree")
            head = cls(
                labels=labels,
                weight=weight,
                bias=tensors["bias"].float(),
                scale=float(metadata["scale"]),
                prototypes=prototypes,
                oos_threshold=None if threshold is None else float(threshold),
                norm_gain=_optional_float(tensors.get("norm_gain")),
                norm_shift=_optional_float(tensors.get("norm_shift")),
                thresholds=_optional_float(tensors.get("thresholds")),
                min_labels=int(metadata.get("min_labels", "0")),
            )
        except HeadDecodeError:
            raise
        except Exception as exc:  # safetensors/json raise a zoo of types on corrupt input
            raise HeadDecodeError(f"cannot decode head: {exc}") from exc
        if not isinstance(head.labels, list) or not all(isinstance(label, str) for label in head.labels):
            raise HeadDecodeError("head labels are not a list of strings")
        n_labels = len(head.labels)
        if (
            len(head.weight.shape) != 2
            or head.weight.shape[0] != n_labels
            or head.bias.shape != (n_labels,)
            or head.prototypes.shape != head.weight.shape
            or (head.norm_gain is None) != (head.norm_shift is None)
            or any(t is not None and t.shape != (head.dim,) for t in (head.norm_gain, head.norm_shift))
            or (head.thresholds is not None and head.thresholds.shape != (n_labels,))
        ):
            raise HeadDecodeError("head tensors and labels disagree in shape")
        if head.thresholds is not None and not bool(((head.thresholds >= 0) & (head.thresholds <= 1)).all()):
            raise HeadDecodeError("head thresholds are not probabilities")
        if head.min_labels not in (0, 1) or (head.min_labels and head.thresholds is None):
            raise HeadDecodeError("head min_labels must be 0 or 1, and only on a multi-label head")
        return head


def _float16_values(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.detach().half().float().cpu().contiguous()


def _optional_float(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.float()


def _int8_rows(values: torch.Tensor, scales: torch.Tensor) -> Int8Rows:
    if values.dtype != torch.int8 or values.ndim != 2 or scales.shape != (values.shape[0],):
        raise HeadDecodeError("int8 rows and their scales disagree in type or shape")
    return Int8Rows(values, scales.float())


def _read_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors buffer (header = 8-byte little-endian length + JSON)."""
    if len(data) < 8:
        raise HeadDecodeError("buffer too short for a safetensors header")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise HeadDecodeError("safetensors header longer than the buffer")
    header = json.loads(data[8 : 8 + header_len])
    return dict(header.get("__metadata__") or {})
