"""Whole data files embedded ONCE with the served encoder and kept on disk (`app.ml.embedding_cache.DiskCache`).

`EmbeddedSet` maps every text of the chosen splits to its row, so benchmarks that refit many heads (cross-
validation, labeling rounds, calibration) never run the encoder twice on a text.

    python -m bench.common.embedded banking77 clinc150   # warm the cache
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from app.meta.data import load_jsonl
from app.ml.embedding_cache import DiskCache, embed_cached
from app.ml.encoder import SentenceEncoder
from app.ml.label_names import readable_name
from app.ml.registry import names as tier_names
from bench.common.data import add_data_option

DEFAULT_CACHE = Path("runs/embed-cache")


@dataclass
class EmbeddedSet:
    """The texts of some splits of a JSONL file, grouped by label, with one embedding row per distinct text."""

    by_label: dict[str, list[str]]
    rows: dict[str, int]
    embeddings: torch.Tensor

    def embed(self, texts: list[str]) -> torch.Tensor:
        return self.embeddings[torch.tensor([self.rows[text] for text in texts], dtype=torch.long)]

    @property
    def labels(self) -> list[str]:
        return sorted(self.by_label)


def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def all_texts(path: Path) -> list[str]:
    """Every distinct text of the file, sorted (the cache key does not depend on the order of the lines)."""
    return sorted({row["text"] for row in read_rows(path)})


def file_embeddings(
    encoder: SentenceEncoder, path: Path, cache: Path | None = DEFAULT_CACHE
) -> tuple[list, torch.Tensor]:
    texts = all_texts(path)

    def compute() -> dict[str, torch.Tensor]:
        return {"embeddings": encoder.embed(texts, batch_size=128)}

    parts = ["file-embeddings", encoder.fingerprint, str(encoder.max_tokens), *texts]
    return texts, DiskCache(cache, prefix=f"{path.stem}-").tensors(parts, compute)["embeddings"]


def embedded_set(
    encoder: SentenceEncoder, path: Path, splits: list[str], cache: Path | None = DEFAULT_CACHE
) -> EmbeddedSet:
    texts, embeddings = file_embeddings(encoder, path, cache)
    rows = {text: i for i, text in enumerate(texts)}
    by_label: dict[str, list[str]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for row in read_rows(path):
        key = (row["text"], row["label"])
        if row["split"] in splits and key not in seen:
            seen.add(key)
            by_label[row["label"]].append(row["text"])
    return EmbeddedSet(dict(by_label), rows, embeddings)


def named_train_split(encoder: SentenceEncoder, path: Path, cache: Path | None = DEFAULT_CACHE) -> EmbeddedSet:
    """The train split of `path` with every label's readable name (`names_of`) embedded beside its texts (one
    `embed_cached` entry for both), for benchmarks that fit with names as examples."""
    by_label = load_jsonl(path, splits=["train"]).by_label
    texts = sorted({text for group in by_label.values() for text in group} | set(names_of(sorted(by_label))))
    return EmbeddedSet(by_label, {text: i for i, text in enumerate(texts)}, embed_cached(encoder, texts, cache))


def names_of(labels: list[str]) -> list[str]:
    """Each label's readable name (the label itself where it reads as no words), in the same order."""
    return [readable_name(label) or label for label in labels]


def add_train_split_options(parser: argparse.ArgumentParser, shots: int) -> None:
    """The options of benchmarks that draw train-split episodes from one file with one tier's encoder."""
    add_data_option(parser)
    parser.add_argument("--dataset", default="banking77", help="a JSONL file of --data with a train split")
    parser.add_argument("--encoder", choices=tier_names(), default="minilm")
    parser.add_argument("--shots", type=int, default=shots)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=None)


def main() -> None:
    from app.bootstrap import load_model
    from app.config import Settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+")
    add_data_option(parser)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    encoder, _, _ = load_model(Settings())
    for name in args.names:
        texts, embeddings = file_embeddings(encoder, args.data / f"{name}.jsonl", args.cache)
        print(f"{name}: {len(texts)} texts -> {tuple(embeddings.shape)}", flush=True)


if __name__ == "__main__":
    main()
