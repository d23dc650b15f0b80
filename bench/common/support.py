"""Support sets drawn from a labelled split: K shots per label, as /adapt examples or as an episode with queries
and an unlabeled pool."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class TrainEpisode:
    """An all-way episode drawn from one split: support, queries and the rest as an unlabeled pool."""

    support: list[tuple[str, str]]  # (text, label), `shots` per label
    queries: list[tuple[str, str]]  # (text, label), `queries` per label (fewer where a label runs out)
    pool: list[str]  # every other text, shuffled


def train_episode(by_label: Mapping[str, Sequence[str]], shots: int, queries: int, seed: int) -> TrainEpisode:
    """Per label (sorted), shuffled with `random.Random(seed)`: the first `shots` texts as support, the next
    `queries` as queries, the rest into the pool."""
    rng = random.Random(seed)
    support: list[tuple[str, str]] = []
    held: list[tuple[str, str]] = []
    pool: list[str] = []
    for label in sorted(by_label):
        group = list(by_label[label])
        rng.shuffle(group)
        support += [(text, label) for text in group[:shots]]
        held += [(text, label) for text in group[shots : shots + queries]]
        pool += group[shots + queries :]
    rng.shuffle(pool)
    return TrainEpisode(support, held, pool)
