"""Would a tier that concatenates both encoders beat mpnet alone? A probe on BANKING77's **train** split only.

77-way K-shot tenants (K support texts per label from train, up to 20 other train texts per label as queries),
seeds 0..n-1; each tenant scored with the `/adapt` inner loop (`adapt_head`) on: MiniLM with the shipped
checkpoint (its inner loop), frozen mpnet (its tier's inner loop), and their unit embeddings concatenated and
re-normalised, MiniLM's half weighted by `w` (mpnet's inner loop). Nothing here is served: it says whether an
ensemble tier is worth building. The test split is not read.

    .venv/bin/pip install -e '.[mpnet]'
    .venv/bin/python -m bench.tier_ensemble_probe
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

import torch
from torch.nn import functional as F

from app.meta.data import load_jsonl
from app.meta.evaluate import _load, precomputed_embedder
from app.ml.learner import InnerLoopParams, adapt_head, head_logits
from app.ml.registry import SHIPPED_CHECKPOINT_DIR
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json


def tenant(by_label: dict[str, list[str]], shots: int, seed: int) -> tuple[list[str], list[int], list[str], list[int]]:
    """Support and query texts with label indices, drawn from the train split only."""
    rng = random.Random(seed)
    support, support_y, query, query_y = [], [], [], []
    for index, label in enumerate(sorted(by_label)):
        pool = list(by_label[label])
        rng.shuffle(pool)
        support += pool[:shots]
        support_y += [index] * shots
        rest = pool[shots : shots + 20]
        query += rest
        query_y += [index] * len(rest)
    return support, support_y, query, query_y


def accuracy(
    support: torch.Tensor, support_y: list[int], query: torch.Tensor, query_y: list[int], inner: InnerLoopParams
) -> float:
    n_labels = max(support_y) + 1
    head = adapt_head(support, torch.tensor(support_y), n_labels, inner, differentiable=False)
    return float((head_logits(query, head, inner.scale).argmax(-1) == torch.tensor(query_y)).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--minilm-weight", type=float, nargs="+", default=[1.0, 0.7])
    parser.add_argument("--cache", type=Path, default=Path("runs/embed-cache"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/tier_ensemble_probe.json"))
    args = parser.parse_args()
    train = load_jsonl(args.data / "banking77.jsonl", ["train"]).by_label
    texts = [text for label in sorted(train) for text in train[label]]
    minilm, minilm_inner = _load(str(SHIPPED_CHECKPOINT_DIR))
    mpnet, mpnet_inner = _load(None, "mpnet")
    small = precomputed_embedder(minilm, [texts], args.cache)
    large = precomputed_embedder(mpnet, [texts], args.cache)

    scores: dict[str, list[float]] = {}
    for shots in args.shots:
        for seed in range(args.seeds):
            support, support_y, query, query_y = tenant(train, shots, seed)
            s_small, q_small = small.embed(support), small.embed(query)
            s_large, q_large = large.embed(support), large.embed(query)
            variants = {"minilm (shipped)": (s_small, q_small, minilm_inner), "mpnet": (s_large, q_large, mpnet_inner)}
            for w in args.minilm_weight:
                joined_s = F.normalize(torch.cat([w * s_small, s_large], dim=1), dim=-1)
                joined_q = F.normalize(torch.cat([w * q_small, q_large], dim=1), dim=-1)
                variants[f"concatenated, MiniLM weight {w}"] = (joined_s, joined_q, mpnet_inner)
            for name, (s, q, inner) in variants.items():
                scores.setdefault(f"{name}|{shots}", []).append(100 * accuracy(s, support_y, q, query_y, inner))
    names = list(dict.fromkeys(key.split("|")[0] for key in scores))
    rows = [[name, *(f"{statistics.mean(scores[f'{name}|{k}']):.2f}" for k in args.shots)] for name in names]
    print_table(["embeddings (BANKING77 train, 77-way)", *(f"{k}-shot" for k in args.shots)], rows)
    write_json(args.out, {"protocol": {k: str(v) for k, v in vars(args).items()}, "accuracy_by_seed": scores})


if __name__ == "__main__":
    main()
