"""The trainable part of the encoder for meta-training, with the frozen bottom cached.

`train_layers` selects what the outer loop trains: `"none"` (frozen encoder: embeddings are
computed once, by the encoder's own forward), `"norm"` (only the affine of the last layer's output
LayerNorm), `"bias"` (every bias and LayerNorm affine of the transformer layers, BitFit-style: 30 k
numbers, 0.13 % of the weights; token embeddings cached), `k` (the top k transformer layers; the hidden states entering
them are computed once per text by the frozen bottom and kept on CPU), or `"all"` (every encoder
weight, no cache).

`"norm"` is exact and cheap: the last LayerNorm applies `gamma * n_t + beta` to normalised token
states `n_t`, and mean pooling commutes with that affine, so the pooled output is `gamma * m + beta`
with `m` the mean of the `n_t`. `m` is computed once per text; training then costs no transformer
passes at all.
The cached path is numerically the same as `SentenceEncoder.forward` (see tests/meta). It calls BERT-style
layers one by one, so the cut paths need a BERT-style encoder (MiniLM); MPNet's layers also take a relative
position bias, so an MPNet encoder trains frozen (`"none"`) or whole (`"all"`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from app.ml.embedding_cache import DiskCache
from app.ml.encoder import SentenceEncoder, mean_pool

TrainLayers = int | str


def n_layers(encoder: SentenceEncoder) -> int:
    return len(encoder.transformer.encoder.layer)


def trained_prefixes(encoder: SentenceEncoder, train_layers: TrainLayers) -> list[str]:
    """State-dict prefixes of the transformer that the outer loop trains."""
    if train_layers == "none" or train_layers == 0:
        return []
    if train_layers == "all":
        return [""]
    total = n_layers(encoder)
    if train_layers == "norm":
        return [f"encoder.layer.{total - 1}.output.LayerNorm."]
    if train_layers == "bias":  # BitFit-style: every bias and LayerNorm affine of the layers, full names
        names = [name for name, _ in encoder.transformer.encoder.layer.named_parameters()]
        return [f"encoder.layer.{n}" for n in names if n.endswith(".bias") or ".LayerNorm." in n]
    k = int(train_layers)
    if not 0 < k <= total:
        raise ValueError(f"train_layers={k} but the encoder has {total} layers")
    return [f"encoder.layer.{i}." for i in range(total - k, total)]


def _layer_out(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


class Backbone(nn.Module):
    """`backbone(texts)` -> unit-norm embeddings, differentiable w.r.t. the trained encoder part only."""

    def __init__(
        self,
        encoder: SentenceEncoder,
        train_layers: TrainLayers,
        cache_dir: Path | None = None,
        cache_layer: int | None = None,
    ) -> None:
        """`cache_layer` (`train_layers="norm"` only) picks which layer's input is cached, to share a cache."""
        super().__init__()
        self.encoder = encoder
        self.train_layers = train_layers
        self.prefixes = trained_prefixes(encoder, train_layers)
        self.disk = DiskCache(cache_dir, prefix="bottom-")
        total = n_layers(encoder)
        model_type = getattr(encoder.transformer.config, "model_type", "bert")
        if model_type != "bert" and train_layers not in ("none", 0, "all"):
            raise ValueError(
                f"train_layers={train_layers!r} runs a {model_type} encoder's layers one by one, which only BERT-style "
                "encoders support: use 'none' or 'all'"
            )
        if train_layers in ("all", "bias"):
            self.cut = 0
        elif train_layers == "norm":  # cache a layer's input, run the rest once without grad
            self.cut = total - 1 if cache_layer is None else cache_layer
        elif train_layers in ("none", 0):
            self.cut = total  # nothing is cut: `_prepare_frozen` runs the encoder's own forward
        else:
            self.cut = total - int(train_layers)
        for name, param in encoder.transformer.named_parameters():
            param.requires_grad_(any(name.startswith(p) for p in self.prefixes))
        self._index: dict[str, int] = {}
        self._tokens = torch.empty(0)  # [total_tokens, dim] hidden states entering layer `cut`
        self._offsets = torch.zeros(1, dtype=torch.long)
        self._frozen: torch.Tensor | None = None  # final embeddings when nothing is trained
        self._normalised_means: torch.Tensor | None = None  # `m` per text for train_layers="norm"

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.encoder.transformer.parameters() if p.requires_grad]

    def trained_state(self) -> dict[str, torch.Tensor]:
        state = self.encoder.transformer.state_dict()
        return {k: v for k, v in state.items() if any(k.startswith(p) for p in self.prefixes)}

    # --- the frozen bottom ---------------------------------------------------------------------
    def _mask(self, attention_mask: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor | None:
        """The attention mask the transformer's layers expect (public helper; the model's private one
        changed its signature between transformers 5.23 and 5.24)."""
        return create_bidirectional_mask(
            config=self.encoder.transformer.config, inputs_embeds=hidden, attention_mask=attention_mask
        )

    @torch.no_grad()
    def _bottom(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.encoder.tokenize(texts)
        transformer = self.encoder.transformer
        hidden = transformer.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
        mask = self._mask(batch["attention_mask"], hidden)
        for layer in transformer.encoder.layer[: self.cut]:
            hidden = _layer_out(layer(hidden, mask))
        return hidden, batch["attention_mask"]

    def _cache_parts(self, texts: Sequence[str]) -> list[str]:
        """What identifies cached states of `texts`: the encoder, its token limit and the cut layer."""
        return [self.encoder.fingerprint, str(self.encoder.max_tokens), str(self.cut), *texts]

    def prepare(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> None:
        """Run the frozen bottom once over `texts` (memoised on disk) so that `forward` can use them."""
        if self.train_layers == "all":
            return
        texts = list(dict.fromkeys(t for t in texts if t not in self._index))
        if not texts:
            return
        if self.train_layers in ("none", 0):
            self._prepare_frozen(texts, batch_size)
            return
        stored = self.disk.tensors(self._cache_parts(texts), lambda: self._encode_bottom(texts, batch_size, progress))
        tokens, lengths = stored["tokens"], stored["lengths"]
        base = len(self._index)
        for i, text in enumerate(texts):
            self._index[text] = base + i
        self._tokens = torch.cat([self._tokens.reshape(-1, tokens.shape[1]).to(tokens.dtype), tokens])
        last = self._offsets[-1]
        self._offsets = torch.cat([self._offsets, last + lengths.cumsum(0)])
        if self.train_layers == "norm":
            self._normalised_means = self._means(list(self._index))

    def _prepare_frozen(self, texts: list[str], batch_size: int) -> None:
        """Final embeddings of `texts` by the encoder's own forward (memoised on disk), appended to `_frozen`."""

        def compute() -> dict[str, torch.Tensor]:
            return {"embeddings": self.encoder.embed(texts, batch_size=batch_size)}

        embeddings = self.disk.tensors(self._cache_parts(["frozen-forward", *texts]), compute)["embeddings"]
        base = len(self._index)
        for i, text in enumerate(texts):
            self._index[text] = base + i
        self._frozen = embeddings if self._frozen is None else torch.cat([self._frozen, embeddings])

    @property
    def last_norm(self) -> nn.LayerNorm:
        return self.encoder.transformer.encoder.layer[-1].output.LayerNorm

    @torch.no_grad()
    def _means(self, texts: list[str]) -> torch.Tensor:
        """`m = (pooled - beta) / gamma` per text under the current last-norm affine (exact inverse)."""
        pooled = torch.cat(
            [self._run_top(texts[i : i + 256], grad=False, unit=False).cpu() for i in range(0, len(texts), 256)]
        )
        norm = self.last_norm
        return (pooled - norm.bias.detach().cpu()) / norm.weight.detach().cpu()

    def _encode_bottom(self, texts: list[str], batch_size: int, progress: bool) -> dict[str, torch.Tensor]:
        from tqdm import tqdm

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        pieces: list[torch.Tensor | None] = [None] * len(texts)
        starts = range(0, len(order), batch_size)
        self.encoder.eval()
        for start in tqdm(starts, desc=f"caching layer-{self.cut} states", disable=not progress):
            idx = order[start : start + batch_size]
            hidden, mask = self._bottom([texts[i] for i in idx])
            for row, i in enumerate(idx):
                pieces[i] = hidden[row, : int(mask[row].sum())].to(torch.float16).cpu()
        lengths = torch.tensor([p.shape[0] for p in pieces], dtype=torch.long)  # type: ignore[union-attr]
        return {"tokens": torch.cat(pieces), "lengths": lengths}  # type: ignore[arg-type]

    # --- the trained top -----------------------------------------------------------------------
    def _run_top(self, texts: Sequence[str], grad: bool, unit: bool = True) -> torch.Tensor:
        rows = [self._index[t] for t in texts]
        lengths = [int(self._offsets[r + 1] - self._offsets[r]) for r in rows]
        width = max(lengths)
        device = self.encoder.device
        hidden = torch.zeros(len(rows), width, self._tokens.shape[1])
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for j, (r, n) in enumerate(zip(rows, lengths, strict=True)):
            hidden[j, :n] = self._tokens[self._offsets[r] : self._offsets[r] + n].float()
            mask[j, :n] = 1
        hidden, mask = hidden.to(device), mask.to(device)
        with torch.set_grad_enabled(grad):
            attn = self._mask(mask, hidden)
            for layer in self.encoder.transformer.encoder.layer[self.cut :]:
                hidden = _layer_out(layer(hidden, attn))
            pooled = mean_pool(hidden, mask)
            return nn.functional.normalize(pooled, p=2, dim=-1) if unit else pooled

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        if self.train_layers == "all":
            return self.encoder(texts)
        missing = [t for t in texts if t not in self._index]
        if missing:
            self.prepare(missing)
        if self._frozen is not None:
            return self._frozen[[self._index[t] for t in texts]].to(self.encoder.device)
        if self._normalised_means is not None:
            means = self._normalised_means[[self._index[t] for t in texts]].to(self.encoder.device)
            norm = self.last_norm
            return nn.functional.normalize(norm.weight * means + norm.bias, p=2, dim=-1)
        return self._run_top(texts, grad=torch.is_grad_enabled())

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Inference embeddings of (prepared or new) texts, on CPU."""
        was_training = self.encoder.training
        self.encoder.eval()
        out = torch.cat([self(texts[i : i + batch_size]).cpu() for i in range(0, len(texts), batch_size)])
        self.encoder.train(was_training)
        return out
