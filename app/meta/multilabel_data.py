"""Multi-label sets, their K-per-label support sampler and their metrics.

Files hold one `{"text", "labels": [...], "split"}` object per line (`labels` may be empty: no label
applies). The multi-label protocol: K examples per label sampled from the train split
(a text sampled for one label keeps all its labels, so a label may end up with more than K), the
test split as queries, several seeds. Pure Python + torch: the SetFit anchor imports it too.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class MultiLabelRows:
    """Texts with their label sets, from one source and one or more splits."""

    name: str
    texts: list[str]
    label_sets: list[tuple[str, ...]]

    @property
    def labels(self) -> list[str]:
        return sorted({label for labels in self.label_sets for label in labels})

    def __len__(self) -> int:
        return len(self.texts)


def load_multilabel(path: Path, splits: Sequence[str]) -> MultiLabelRows:
    """Read a multi-label JSONL set (rows in file order; duplicate texts keep their first label set)."""
    texts: list[str] = []
    label_sets: list[tuple[str, ...]] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            if row["split"] not in splits or row["text"] in seen:
                continue
            seen.add(row["text"])
            texts.append(row["text"])
            label_sets.append(tuple(dict.fromkeys(row["labels"])))
    return MultiLabelRows(path.stem, texts, label_sets)


def sample_k_per_label(rows: MultiLabelRows, k: int, seed: int) -> MultiLabelRows:
    """K texts per label, labels visited rarest first; a text drawn for one label keeps all its labels
    (and counts towards them), so a label is topped up only to K. Deterministic for a seed."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, labels in enumerate(rows.label_sets):
        for label in labels:
            by_label[label].append(i)
    chosen: list[int] = []
    taken: set[int] = set()
    have: dict[str, int] = defaultdict(int)
    for label in sorted(by_label, key=lambda name: (len(by_label[name]), name)):
        pool = [i for i in by_label[label] if i not in taken]
        rng.shuffle(pool)
        for i in pool[: max(0, k - have[label])]:
            taken.add(i)
            chosen.append(i)
            for other in rows.label_sets[i]:
                have[other] += 1
    rng.shuffle(chosen)
    return MultiLabelRows(
        f"{rows.name}-k{k}-s{seed}", [rows.texts[i] for i in chosen], [rows.label_sets[i] for i in chosen]
    )


def multi_hot(label_sets: Sequence[Sequence[str]], labels: Sequence[str]) -> torch.Tensor:
    """`[n, len(labels)]` 0/1 float matrix; labels outside `labels` are ignored."""
    index = {label: j for j, label in enumerate(labels)}
    matrix = torch.zeros(len(label_sets), len(labels))
    for i, row in enumerate(label_sets):
        for label in row:
            if label in index:
                matrix[i, index[label]] = 1.0
    return matrix


def multilabel_metrics(predicted: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Micro-F1, macro-F1 (over labels with a true or predicted positive) and exact match, from 0/1 `[n, c]`.

    A text with no true and no predicted label is an exact match; F1 of a label with neither is left out
    of the macro mean.
    """
    predicted, truth = predicted.bool(), truth.bool()
    tp = (predicted & truth).sum(dim=0).float()
    fp = (predicted & ~truth).sum(dim=0).float()
    fn = (~predicted & truth).sum(dim=0).float()
    micro = float(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()).clamp(min=1))
    denom = 2 * tp + fp + fn
    present = denom > 0
    macro = float((2 * tp[present] / denom[present]).mean()) if bool(present.any()) else 0.0
    exact = float((predicted == truth).all(dim=1).float().mean())
    return {"micro_f1": micro, "macro_f1": macro, "exact_match": exact}
