"""The benches' train-split episodes: per label, disjoint support, queries and pool, the same for the same seed."""

from __future__ import annotations

from bench.common.support import train_episode

BY_LABEL = {label: [f"{label} text {i}" for i in range(size)] for label, size in (("b", 9), ("a", 30), ("c", 4))}


def test_an_episode_splits_each_label_into_support_queries_and_pool() -> None:
    episode = train_episode(BY_LABEL, shots=3, queries=5, seed=7)
    for label, texts in BY_LABEL.items():
        support = [text for text, of in episode.support if of == label]
        queries = [text for text, of in episode.queries if of == label]
        pool = [text for text in episode.pool if text.startswith(f"{label} ")]
        assert len(support) == 3 and len(queries) == min(5, len(texts) - 3)
        assert sorted(support + queries + pool) == sorted(texts)  # disjoint, nothing lost
    assert [label for _, label in episode.support] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3  # labels sorted


def test_the_same_seed_draws_the_same_episode_and_another_seed_another() -> None:
    assert train_episode(BY_LABEL, 3, 5, seed=1) == train_episode(BY_LABEL, 3, 5, seed=1)
    assert train_episode(BY_LABEL, 3, 5, seed=1).support != train_episode(BY_LABEL, 3, 5, seed=2).support
