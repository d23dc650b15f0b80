"""What else the frozen tier encoder gives at K shots: inference-time variants of the /adapt fit on a *train* split.

All-way episodes from the train split only (K support texts per label, 20 other train texts per label as queries,
every remaining train text as the unlabeled pool; `bench.common.support.train_episode`), label names as one more
example each (as `/adapt` with `label_names` used). Each variant is fitted through `adapt_head`, the /adapt inner
loop, and scored on the queries:

- `names`, `names + pool`: what /adapt serves (without and with the pool's information term);
- `+ pool, N steps`: more inner steps;
- `+ pool, centred`: every embedding minus the mean of the tenant's texts (support and pool), renormalised
  (also with 4x the steps);
- `+ pool, self-training top T`: the served fit's T most confident pool texts per predicted label added as
  examples, then refitted;
- `+ pool, soft k-means init`: the prototypes refined by two soft k-means rounds over the pool before the steps;
- `+ pool, with layer L` (`--extra-layer L`): the mean-pooled output of transformer layer L concatenated with the
  final embedding (each unit-norm, then renormalised).

    .venv/bin/python -m bench.frozen_levers --data DATA --shots 10 --extra-layer 4
    .venv/bin/python -m bench.frozen_levers --data DATA --shots 10 --encoder mpnet
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

from app.bootstrap import load_tier_model
from app.config import Settings
from app.ml.encoder import SentenceEncoder, mean_pool
from app.ml.learner import HeadTensors, InnerLoopParams, adapt_head, head_logits, prototype_head
from bench.common.embedded import add_train_split_options, named_train_split, names_of
from bench.common.results import print_table, write_json
from bench.common.support import train_episode

QUERIES_PER_LABEL = 20
SELF_TRAINING_TOP = (5, 10)
SOFT_KMEANS_ROUNDS = 2


def layer_embeddings(encoder: SentenceEncoder, texts: list[str], layer: int, batch: int = 128) -> torch.Tensor:
    """Unit-norm mean-pooled outputs of transformer layer `layer` (0: the token embeddings)."""
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            tokens = encoder.tokenize(texts[start : start + batch])
            hidden = encoder.transformer(**tokens, output_hidden_states=True).hidden_states[layer]
            rows.append(F.normalize(mean_pool(hidden.float(), tokens["attention_mask"]), dim=-1).cpu())
    return torch.cat(rows)


def self_training_rows(
    head: HeadTensors, pool: torch.Tensor, scale: torch.Tensor, top: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `top` most confident pool rows per predicted label, with those labels."""
    confidence, predicted = F.softmax(head_logits(pool, head, scale), dim=-1).max(dim=-1)
    chosen = []
    for label in predicted.unique():
        members = (predicted == label).nonzero().squeeze(1)
        chosen.append(members[confidence[members].argsort(descending=True)[:top]])
    picked = torch.cat(chosen)
    return pool[picked], predicted[picked]


def soft_kmeans_head(
    rows: torch.Tensor, targets: torch.Tensor, pool: torch.Tensor, n: int, scale: torch.Tensor
) -> HeadTensors:
    """Prototypes refined over the pool (Ren et al. 2018): each round, every pool row joins every class with its
    softmax weight under the current prototype head; labelled rows keep weight 1 in their own class."""
    onehot = F.one_hot(targets, n).to(rows.dtype)
    head = prototype_head(rows, targets, n)
    for _ in range(SOFT_KMEANS_ROUNDS):
        weights = F.softmax(head_logits(pool, head, scale), dim=-1)
        protos = (onehot.T @ rows + weights.T @ pool) / (onehot.sum(0) + weights.sum(0)).unsqueeze(1)
        head = HeadTensors(2.0 * protos, -(protos * protos).sum(dim=-1))
    return head


def variants(
    inner: InnerLoopParams, rows: torch.Tensor, targets: torch.Tensor, pool: torch.Tensor, n: int
) -> dict[str, Callable[[], HeadTensors]]:
    """Each variant's fit; those that transform the embeddings are scored separately (`centred`)."""
    scale = inner.scale

    def fit(params: InnerLoopParams = inner, **kwargs: object) -> HeadTensors:
        return adapt_head(rows, targets, n, params, differentiable=False, **kwargs)  # type: ignore[arg-type]

    def self_trained(top: int) -> HeadTensors:
        extra_rows, extra_targets = self_training_rows(fit(unlabeled=pool), pool, scale, top)
        both = torch.cat([rows, extra_rows]), torch.cat([targets, extra_targets])
        return adapt_head(*both, n, inner, differentiable=False, unlabeled=pool)

    fits: dict[str, Callable[[], HeadTensors]] = {
        "names": fit,
        "names + pool": lambda: fit(unlabeled=pool),
    }
    for steps in (2 * inner.steps, 4 * inner.steps):
        fits[f"+ pool, {steps} steps"] = lambda steps=steps: fit(inner.with_steps(steps), unlabeled=pool)
    for top in SELF_TRAINING_TOP:
        fits[f"+ pool, self-training top {top}"] = lambda top=top: self_trained(top)
    fits["+ pool, soft k-means init"] = lambda: fit(
        init=soft_kmeans_head(rows, targets, pool, n, scale), unlabeled=pool
    )
    return fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_split_options(parser, shots=10)
    parser.add_argument("--extra-layer", type=int, default=None, help="also: this layer's output concatenated")
    args = parser.parse_args()
    out = args.out or Path(f"bench/results/frozen_levers_{args.encoder}_{args.dataset}_{args.shots}shot.json")

    torch.manual_seed(0)
    encoder, inner, checkpoint = load_tier_model(Settings(), args.encoder)
    split = named_train_split(encoder, args.data / f"{args.dataset}.jsonl", args.cache)
    spaces = {"final": split}
    if args.extra_layer is not None:
        extra = layer_embeddings(encoder, list(split.rows), args.extra_layer)
        joined = F.normalize(torch.cat([split.embeddings, extra], dim=1), dim=-1)
        spaces[f"layer {args.extra_layer}"] = dataclasses.replace(split, embeddings=joined)
    labels = split.labels
    names = names_of(labels)
    index = {label: i for i, label in enumerate(labels)}
    n = len(labels)

    results: dict[str, list[float]] = {}
    for seed in args.seeds:
        episode = train_episode(split.by_label, args.shots, QUERIES_PER_LABEL, seed)
        targets = torch.cat([torch.tensor([index[label] for _, label in episode.support]), torch.arange(n)])
        query_targets = torch.tensor([index[label] for _, label in episode.queries])
        support_texts = [text for text, _ in episode.support] + names
        query_texts = [text for text, _ in episode.queries]

        def score(key: str, head: HeadTensors, queries: torch.Tensor) -> None:
            right = head_logits(queries, head, inner.scale).argmax(-1) == query_targets  # noqa: B023
            results.setdefault(key, []).append(float(right.float().mean()))

        for space, embedded in spaces.items():
            support, queries, pool = (embedded.embed(part) for part in (support_texts, query_texts, episode.pool))
            if space != "final":
                score(f"+ pool, with {space}", adapt_head(support, targets, n, inner, False, unlabeled=pool), queries)
                continue
            for key, fit in variants(inner, support, targets, pool, n).items():
                score(key, fit(), queries)
            mean = torch.cat([support, pool]).mean(dim=0)
            centred = [F.normalize(part - mean, dim=-1) for part in (support, queries, pool)]
            for steps in (inner.steps, 4 * inner.steps):
                head = adapt_head(centred[0], targets, n, inner.with_steps(steps), False, unlabeled=centred[2])
                score(f"+ pool, centred{'' if steps == inner.steps else f', {steps} steps'}", head, centred[1])
        print(seed, {key: round(100 * values[-1], 2) for key, values in results.items()}, flush=True)

    means = {key: statistics.mean(values) for key, values in results.items()}
    served = means["names + pool"]
    table = [(key, f"{100 * value:.2f}", f"{100 * (value - served):+.2f}") for key, value in means.items()]
    print_table(["variant", "train-split query accuracy", "vs names + pool"], table)
    protocol = vars(args) | {"data": str(args.data), "cache": str(args.cache), "out": str(out)}
    write_json(out, {"protocol": protocol, "checkpoint": checkpoint, "mean": means, "by_seed": results})


if __name__ == "__main__":
    main()
