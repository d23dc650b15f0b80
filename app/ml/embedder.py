"""One way to say "how to embed": an `Embedder` turns texts into unit-norm embeddings and names the model.

The services, meta-training's evaluation and the tenant-fitting core (`app.ml.tenant_fit`) all take an
`Embedder`. `fingerprint` is the encoder's (`SentenceEncoder.fingerprint`): heads adapted under another
fingerprint are stale, so every route to the same encoder (a batch size, a micro-batcher, a cache) keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from app.ml.encoder import SentenceEncoder

EmbedFn = Callable[[list[str]], torch.Tensor]  # texts -> embeddings: one route to an encoder


class Embedder(Protocol):
    """Texts -> embeddings `[len(texts), dim]` on CPU, and the id of the model that computes them."""

    @property
    def fingerprint(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> torch.Tensor: ...


@dataclass(frozen=True)
class EncoderEmbedder:
    """A `SentenceEncoder` at a fixed batch size (a bare encoder is an `Embedder` too, at batch size 64)."""

    encoder: SentenceEncoder
    batch_size: int = 64

    @property
    def fingerprint(self) -> str:
        return self.encoder.fingerprint  # read live: a checkpoint or quantization applied later changes it

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        return self.encoder.embed(list(texts), batch_size=self.batch_size)


@dataclass(frozen=True)
class RoutedEmbedder:
    """`base`'s embeddings computed through another route, e.g. a `MicroBatcher` over `base.embed`."""

    route: EmbedFn
    base: Embedder

    @property
    def fingerprint(self) -> str:
        return self.base.fingerprint

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        return self.route(list(texts))
