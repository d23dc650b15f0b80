"""Support sets drawn from a labelled split: K shots per label, as /adapt examples."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

Example = dict[str, str]


def k_shot_examples(
    by_label: Mapping[str, Sequence[str]], shots: int, rng: random.Random, labels: Sequence[str] | None = None
) -> list[Example]:
    """`shots` random texts of every label (sorted; or of `labels`, in that order) as /adapt examples."""
    chosen = sorted(by_label) if labels is None else labels
    return [{"text": text, "label": label} for label in chosen for text in rng.sample(by_label[label], shots)]


def n_way_k_shot(by_label: Mapping[str, Sequence[str]], n_way: int, k_shot: int, rng: random.Random) -> list[Example]:
    """`n_way` random labels x `k_shot` random texts each, as /adapt examples."""
    return k_shot_examples(by_label, k_shot, rng, labels=rng.sample(sorted(by_label), n_way))
