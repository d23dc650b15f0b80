"""A tenant's adapted head: labels + linear layer + temperature + out-of-scope rule, and its codec."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from app.ml.learner import HeadTensors, head_logits
from app.ml.ood import oos_scores

HEAD_SCHEMA = "1"


class HeadDecodeError(ValueError):
    """Bytes that are not a head we wrote (truncated, tampered with, other schema)."""


@dataclass
class TenantHead:
    """Everything needed to score embeddings for one tenant."""

    labels: list[str]
    weight: torch.Tensor  # [n_labels, dim], float32 holding float16-representable values (stored as float16)
    bias: torch.Tensor  # [n_labels]
    scale: float  # inverse temperature applied to the logits
    prototypes: torch.Tensor  # [n_labels, dim], unit-norm class means (float16), for out-of-scope scores
    oos_threshold: float | None  # below this prototype similarity a text is out of scope; None = off

    @classmethod
    def from_tensors(
        cls,
        labels: list[str],
        head: HeadTensors,
        scale: float,
        prototypes: torch.Tensor,
        oos_threshold: float | None,
    ) -> TenantHead:
        return cls(
            labels=list(labels),
            weight=head.weight.detach().half().float().cpu().contiguous(),  # float16 at rest: 2 bytes/weight
            bias=head.bias.detach().float().cpu().contiguous(),
            scale=float(scale),
            prototypes=prototypes.detach().half().cpu().contiguous(),
            oos_threshold=oos_threshold,
        )

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def probabilities(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Softmax over labels, `[n, n_labels]`."""
        tensors = HeadTensors(self.weight, self.bias)
        return torch.softmax(head_logits(embeddings.float(), tensors, self.scale), dim=-1)

    def oos_scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Similarity to the nearest label prototype, `[n]`; compare with `oos_threshold`."""
        return oos_scores(embeddings, self.prototypes)

    def to_bytes(self) -> bytes:
        """safetensors bytes; labels, scale and threshold ride in the header metadata (JSON strings)."""
        metadata = {
            "schema": HEAD_SCHEMA,
            "labels": json.dumps(self.labels, ensure_ascii=False),
            "scale": repr(self.scale),
            "oos_threshold": json.dumps(self.oos_threshold),
        }
        tensors = {"weight": self.weight.half(), "bias": self.bias, "prototypes": self.prototypes}
        return st_save(tensors, metadata=metadata)

    @classmethod
    def from_bytes(cls, data: bytes) -> TenantHead:
        """Inverse of `to_bytes`; raises `HeadDecodeError` on anything malformed."""
        try:
            tensors = st_load(data)
            metadata = _read_metadata(data)
            if metadata.get("schema") != HEAD_SCHEMA:
                raise HeadDecodeError(f"head schema {metadata.get('schema')!r}, expected {HEAD_SCHEMA}")
            labels = json.loads(metadata["labels"])
            threshold = json.loads(metadata["oos_threshold"])
            head = cls(
                labels=labels,
                weight=tensors["weight"].float(),
                bias=tensors["bias"],
                scale=float(metadata["scale"]),
                prototypes=tensors["prototypes"],
                oos_threshold=None if threshold is None else float(threshold),
            )
        except HeadDecodeError:
            raise
        except Exception as exc:  # safetensors/json raise a zoo of types on corrupt input
            raise HeadDecodeError(f"cannot decode head: {exc}") from exc
        n_labels = len(head.labels)
        if (
            head.weight.ndim != 2
            or head.weight.shape[0] != n_labels
            or head.bias.shape != (n_labels,)
            or head.prototypes.shape != head.weight.shape
        ):
            raise HeadDecodeError("head tensors and labels disagree in shape")
        return head


def _read_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors buffer (header = 8-byte little-endian length + JSON)."""
    if len(data) < 8:
        raise HeadDecodeError("buffer too short for a safetensors header")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise HeadDecodeError("safetensors header longer than the buffer")
    header = json.loads(data[8 : 8 + header_len])
    return dict(header.get("__metadata__") or {})
