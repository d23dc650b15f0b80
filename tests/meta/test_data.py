"""Episode samplers: shot counts, no leakage between support and query, source purity."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from app.meta.data import (
    EpisodeMixture,
    LabeledSet,
    SourceSpec,
    all_way_episode,
    cap_per_class,
    load_jsonl,
    sample_episode,
    sample_variable_way,
    split_classes,
)


def _synthetic(name: str, n_classes: int, per_class: int) -> LabeledSet:
    return LabeledSet(name, {f"{name}-c{c}": [f"{name} c{c} t{i}" for i in range(per_class)] for c in range(n_classes)})


@pytest.mark.parametrize(("n_way", "k_shot", "n_query"), [(2, 1, 3), (5, 5, 5), (4, 3, 1)])
def test_episode_has_exact_counts_and_no_leak(n_way: int, k_shot: int, n_query: int) -> None:
    data = _synthetic("s", 8, 10)
    for seed in range(20):
        ep = sample_episode(data, n_way, k_shot, n_query, random.Random(seed))
        assert ep.n_way == n_way == len(set(ep.labels))
        assert Counter(ep.support_targets) == dict.fromkeys(range(n_way), k_shot)
        assert Counter(ep.query_targets) == dict.fromkeys(range(n_way), n_query)
        assert not set(ep.support_texts) & set(ep.query_texts)
        for text, y in zip(ep.support_texts + ep.query_texts, ep.support_targets + ep.query_targets, strict=True):
            assert text in data.by_label[ep.labels[y]]


def test_queries_from_test_split(clinc_sample) -> None:
    train, test = load_jsonl(clinc_sample, ["train"]), load_jsonl(clinc_sample, ["test"])
    ep = sample_episode(train, 5, 5, 15, random.Random(0), query_data=test)
    assert set(ep.support_texts) <= {t for t, _ in train.pairs()}
    assert set(ep.query_texts) <= {t for t, _ in test.pairs()}
    assert Counter(ep.support_targets) == dict.fromkeys(range(5), 5)


def test_all_way_uses_every_class_and_whole_test_split(clinc_sample) -> None:
    train, test = load_jsonl(clinc_sample, ["train"]), load_jsonl(clinc_sample, ["test"])
    ep = all_way_episode(train, test, 3, random.Random(1))
    assert ep.n_way == 5
    assert len(ep.query_texts) == len(test)
    assert Counter(ep.support_targets) == dict.fromkeys(range(5), 3)


def test_variable_way_within_range_and_capped() -> None:
    data = _synthetic("s", 12, 10)
    ways = {sample_variable_way(data, (3, 40), 2, 2, random.Random(s)).n_way for s in range(60)}
    assert min(ways) >= 3
    assert max(ways) == 12  # many-way "hard" episodes use up to every class of the source


def test_mixture_never_mixes_sources_and_respects_weights() -> None:
    a, b = _synthetic("a", 6, 8), _synthetic("b", 6, 8)
    mixture = EpisodeMixture([SourceSpec(a, 3.0, (2, 6)), SourceSpec(b, 1.0, (2, 6))], (1, 3), 2)
    rng = random.Random(0)
    sources = Counter()
    for _ in range(400):
        ep = mixture.sample(rng)
        sources[ep.source] += 1
        prefixes = {label.split("-")[0] for label in ep.labels}
        assert len(prefixes) == 1 and prefixes == {ep.source}
        assert 1 <= Counter(ep.support_targets)[0] <= 3
    assert 2.3 < sources["a"] / sources["b"] < 3.9


def test_split_classes_is_a_partition_and_cap_is_bounded() -> None:
    data = _synthetic("s", 10, 30)
    train, held = split_classes(data, 0.3, seed=0)
    assert set(train.labels).isdisjoint(held.labels)
    assert set(train.labels) | set(held.labels) == set(data.labels)
    assert len(held.labels) == 3
    capped = cap_per_class(data, 7, seed=0)
    assert all(len(texts) == 7 for texts in capped.by_label.values())


def test_load_jsonl_excludes_labels(tmp_path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(
        '{"text": "a", "label": "x", "split": "train"}\n{"text": "b", "label": "oos", "split": "train"}\n'
        '{"text": "c", "label": "x", "split": "oos_train"}\n'
    )
    data = load_jsonl(path, ["train"], exclude_labels=["oos"])
    assert data.by_label == {"x": ["a"]}


def test_hard_episode_takes_the_anchors_nearest_classes() -> None:
    from app.meta.data import sample_hard_episode

    data = _synthetic("s", 6, 6)
    labels = data.labels
    similar = {c: sorted(labels, key=lambda other: abs(labels.index(other) - labels.index(c))) for c in labels}
    for seed in range(10):
        ep = sample_hard_episode(data, 3, 2, 2, random.Random(seed), similar)
        idx = sorted(labels.index(c) for c in ep.labels)
        assert idx[-1] - idx[0] <= 2  # neighbours of the anchor only
        assert Counter(ep.support_targets) == dict.fromkeys(range(3), 2)
        assert not set(ep.support_texts) & set(ep.query_texts)
