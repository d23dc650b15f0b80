"""Choose the information term's weight on a *train* split: the inner loop with a pool of unlabeled texts.

All-way K-shot episodes drawn from the train split only (the test split is never touched): K support texts per
label, 20 other train texts per label as queries, every remaining train text as the unlabeled pool (or a random
`--pool-sizes` subset of it). Each episode is fitted without the pool and with it at every `--weights` value,
through `adapt_head` (the `/adapt` inner loop, frozen tier encoder with its shipped checkpoint), label names as
examples with `--names`. Writes JSON.

    .venv/bin/python -m bench.unlabeled_pool --data DATA --dataset banking77 --names
    .venv/bin/python -m bench.unlabeled_pool --data DATA --dataset clinc150 --names --weights 0.5 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import torch

from app.bootstrap import load_tier_model
from app.config import Settings
from app.ml.learner import InnerLoopParams, adapt_head, head_logits
from bench.common.embedded import add_train_split_options, named_train_split, names_of
from bench.common.results import print_table, write_json
from bench.common.support import train_episode

QUERIES_PER_LABEL = 20


def accuracy(
    rows: torch.Tensor,
    targets: torch.Tensor,
    n: int,
    inner: InnerLoopParams,
    *,
    pool: torch.Tensor | None,
    queries: tuple[torch.Tensor, torch.Tensor],
) -> float:
    """Query accuracy of the inner loop fitted on (`rows`, `targets`), with the unlabeled `pool` when given."""
    head = adapt_head(rows, targets, n, inner, differentiable=False, unlabeled=pool)
    q_rows, q_targets = queries
    return float((head_logits(q_rows, head, inner.scale).argmax(-1) == q_targets).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_split_options(parser, shots=5)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--pool-sizes", type=int, nargs="+", default=[0], help="0: every remaining train text")
    parser.add_argument("--names", action="store_true", help="each label's readable name as one more example")
    args = parser.parse_args()
    out = args.out or Path(f"bench/results/unlabeled_pool_{args.dataset}.json")

    encoder, inner, checkpoint = load_tier_model(Settings(), args.encoder)
    split = named_train_split(encoder, args.data / f"{args.dataset}.jsonl", args.cache)
    labels = split.labels
    names = names_of(labels)
    index = {label: i for i, label in enumerate(labels)}
    n = len(labels)
    rows = split.embed

    results: dict[str, list[float]] = {}
    for seed in args.seeds:
        episode = train_episode(split.by_label, args.shots, QUERIES_PER_LABEL, seed)
        support, queries, pool = episode.support, episode.queries, episode.pool
        fit_rows = rows([text for text, _ in support])
        fit_targets = torch.tensor([index[label] for _, label in support])
        if args.names:
            fit_rows, fit_targets = torch.cat([fit_rows, rows(names)]), torch.cat([fit_targets, torch.arange(n)])
        held = (rows([text for text, _ in queries]), torch.tensor([index[label] for _, label in queries]))
        results.setdefault("no pool", []).append(accuracy(fit_rows, fit_targets, n, inner, pool=None, queries=held))
        for size in args.pool_sizes:
            unlabeled = rows(pool[:size] if size else pool)
            for weight in args.weights:
                weighted = dataclasses.replace(inner, unlabeled_weight=weight)
                key = f"pool {size or len(pool)} weight {weight}"
                value = accuracy(fit_rows, fit_targets, n, weighted, pool=unlabeled, queries=held)
                results.setdefault(key, []).append(value)
        print(seed, {key: round(100 * values[-1], 2) for key, values in results.items()}, flush=True)

    means = {key: statistics.mean(values) for key, values in results.items()}
    table = [(key, f"{100 * value:.2f}") for key, value in means.items()]
    print_table(["variant", "train-split query accuracy"], table)
    protocol = vars(args) | {"data": str(args.data), "cache": str(args.cache), "out": str(out)}
    write_json(out, {"protocol": protocol, "checkpoint": checkpoint, "mean": means, "by_seed": results})


if __name__ == "__main__":
    main()
