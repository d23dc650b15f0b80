"""JSONL text-classification sets and episode samplers for meta-training and evaluation.

Files hold one `{"text", "label", "split"}` object per line (see ../shared/data/README.md).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.ml.label_names import readable_name as served_readable_name


@dataclass
class LabeledSet:
    """Texts grouped by label, from one source and one or more splits."""

    name: str
    by_label: dict[str, list[str]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return sorted(self.by_label)

    def __len__(self) -> int:
        return sum(len(texts) for texts in self.by_label.values())

    def restrict(self, labels: Iterable[str], name: str | None = None) -> LabeledSet:
        keep = set(labels)
        return LabeledSet(name or self.name, {k: v for k, v in self.by_label.items() if k in keep})

    def pairs(self) -> list[tuple[str, str]]:
        """(text, label) for every example, in a stable order."""
        return [(text, label) for label in self.labels for text in self.by_label[label]]


def load_jsonl(path: Path, splits: Sequence[str] | None = None, exclude_labels: Sequence[str] = ()) -> LabeledSet:
    """Read a JSONL set, keeping the given splits (all when None) and dropping `exclude_labels`."""
    by_label: dict[str, list[str]] = defaultdict(list)
    skip = set(exclude_labels)
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            if splits is not None and row["split"] not in splits:
                continue
            if row["label"] in skip:
                continue
            by_label[row["label"]].append(row["text"])
    return LabeledSet(path.stem, dict(by_label))


@dataclass
class Episode:
    """One few-shot task: support and query examples with labels indexed 0..n_way-1."""

    labels: list[str]
    support_texts: list[str]
    support_targets: list[int]
    query_texts: list[str]
    query_targets: list[int]
    source: str = ""
    names: list[str] | None = None  # each label's name as words, in `labels` order (None: not readable)

    @property
    def n_way(self) -> int:
        return len(self.labels)


def sample_episode(
    data: LabeledSet,
    n_way: int,
    k_shot: int,
    n_query: int,
    rng: random.Random,
    query_data: LabeledSet | None = None,
) -> Episode:
    """N-way K-shot episode. Support and query never share a text.

    With `query_data` (e.g. the test split) queries come from there and support from `data`.
    Classes need at least `k_shot` (+ `n_query` when queries come from `data`) examples.
    """
    pool = query_data or data
    need = k_shot + (0 if query_data is not None else n_query)
    eligible = [c for c in data.labels if len(data.by_label[c]) >= need and c in pool.by_label]
    if len(eligible) < n_way:
        raise ValueError(f"{data.name}: only {len(eligible)} classes have {need} examples; asked {n_way}-way")
    classes = rng.sample(eligible, n_way)
    episode = Episode(classes, [], [], [], [], data.name)
    for index, label in enumerate(classes):
        if query_data is None:
            chosen = rng.sample(data.by_label[label], need)
            support, query = chosen[:k_shot], chosen[k_shot:]
        else:
            support = rng.sample(data.by_label[label], k_shot)
            candidates = query_data.by_label[label]
            query = rng.sample(candidates, min(n_query, len(candidates)))
        episode.support_texts += support
        episode.support_targets += [index] * len(support)
        episode.query_texts += query
        episode.query_targets += [index] * len(query)
    return episode


def split_classes(data: LabeledSet, held_out_fraction: float, seed: int) -> tuple[LabeledSet, LabeledSet]:
    """Partition classes into (train, held-out) for validation on unseen classes."""
    labels = data.labels
    rng = random.Random(seed)
    rng.shuffle(labels)
    n_held = max(1, round(len(labels) * held_out_fraction))
    return data.restrict(labels[n_held:], data.name), data.restrict(labels[:n_held], f"{data.name}-heldout")


def sample_variable_way(
    data: LabeledSet,
    way_range: tuple[int, int],
    k_shot: int,
    n_query: int,
    rng: random.Random,
) -> Episode:
    """Episode with N drawn uniformly from `way_range` (inclusive), capped by the eligible classes.

    A large upper bound gives many-way "hard" episodes: all classes come from the same source.
    """
    eligible = sum(1 for texts in data.by_label.values() if len(texts) >= k_shot + n_query)
    if eligible < 2:
        raise ValueError(f"{data.name}: fewer than 2 classes have {k_shot + n_query} examples")
    low, high = way_range
    high = min(high, eligible)
    n_way = rng.randint(min(low, high), high)
    return sample_episode(data, n_way, k_shot, n_query, rng)


def all_way_episode(
    support_data: LabeledSet,
    query_data: LabeledSet,
    k_shot: int,
    rng: random.Random,
    max_query_per_class: int | None = None,
) -> Episode:
    """Every class of `support_data`: K support from it, queries = all of `query_data` (or a capped sample)."""
    labels = [label for label in support_data.labels if label in query_data.by_label]
    episode = Episode(labels, [], [], [], [], support_data.name)
    for index, label in enumerate(labels):
        support = rng.sample(support_data.by_label[label], k_shot)
        query = list(query_data.by_label[label])
        if max_query_per_class is not None and len(query) > max_query_per_class:
            query = rng.sample(query, max_query_per_class)
        episode.support_texts += support
        episode.support_targets += [index] * k_shot
        episode.query_texts += query
        episode.query_targets += [index] * len(query)
    return episode


def sample_hard_episode(
    data: LabeledSet,
    n_way: int,
    k_shot: int,
    n_query: int,
    rng: random.Random,
    similar: dict[str, list[str]],
) -> Episode:
    """Episode of an anchor class and its `n_way - 1` most similar classes (`similar[c]`: nearest first)."""
    need = k_shot + n_query
    eligible = [c for c in data.labels if len(data.by_label[c]) >= need]
    anchor = rng.choice(eligible)
    allowed = set(eligible)
    classes = [anchor, *[c for c in similar[anchor] if c in allowed and c != anchor][: n_way - 1]]
    return sample_episode(data.restrict(classes), len(classes), k_shot, n_query, rng)


@dataclass
class SourceSpec:
    """One meta-training source in a mixture; `similar` (class -> nearest classes) enables hard episodes."""

    data: LabeledSet
    weight: float = 1.0
    way_range: tuple[int, int] = (5, 20)
    similar: dict[str, list[str]] | None = None
    names: dict[str, str] | None = None  # label -> its name as words (`label_names`); absent: not readable


@dataclass
class EpisodeMixture:
    """Pick a source by weight, then a variable-way episode from it (classes never mix sources)."""

    sources: list[SourceSpec]
    k_shot_range: tuple[int, int] = (1, 5)
    n_query: int = 5
    hard_fraction: float = 0.0  # share of episodes built from an anchor class and its nearest classes

    def sample(self, rng: random.Random) -> Episode:
        weights = [spec.weight for spec in self.sources]
        spec = rng.choices(self.sources, weights=weights, k=1)[0]
        k_shot = rng.randint(*self.k_shot_range)
        if spec.similar is not None and rng.random() < self.hard_fraction:
            n_way = rng.randint(*spec.way_range)
            episode = sample_hard_episode(spec.data, n_way, k_shot, self.n_query, rng, spec.similar)
        else:
            episode = sample_variable_way(spec.data, spec.way_range, k_shot, self.n_query, rng)
        if spec.names is not None and all(label in spec.names for label in episode.labels):
            episode.names = [spec.names[label] for label in episode.labels]
        return episode


def cap_per_class(data: LabeledSet, cap: int, seed: int) -> LabeledSet:
    """At most `cap` texts per class (a seeded sample), to bound encoding cost."""
    rng = random.Random(seed)
    capped = {
        label: (rng.sample(texts, cap) if len(texts) > cap else list(texts)) for label, texts in data.by_label.items()
    }
    return LabeledSet(data.name, capped)


def readable_name(label: str) -> str | None:
    """A label's name as lower-case words (`card_arrival` -> "card arrival"), or None when it does not read as
    words: the rule `/adapt` applies to tenants' names (`app.ml.label_names.readable_name`)."""
    name = served_readable_name(label)
    return None if name is None else name.lower()


def label_names(labels: Iterable[str], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """label -> words for every label that reads as words; `overrides` (label -> words) take precedence."""
    given = overrides or {}
    names = {label: given.get(label) or readable_name(label) for label in labels}
    return {label: name for label, name in names.items() if name}
