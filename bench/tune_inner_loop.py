"""Choose the inner loop's default steps / learning rate / scale on a *train* split (BANKING77's, or xSID's).

Two tasks, both drawn from the train split only (the test split is never touched): all-way K-shot
(`--seeds` episodes; with xSID one per language and seed, the intents with enough examples in that language) and
5-way K-shot (`--small-episodes` episodes); support K shots per class, queries other train examples of the same
classes. Settings are ranked by the mean accuracy of the two tasks (ties: NLL). Writes JSON.

    .venv/bin/python -m bench.tune_inner_loop --out bench/results/tune_inner_loop.json
    .venv/bin/python -m bench.tune_inner_loop --encoder mpnet --out bench/results/tune_inner_loop_mpnet.json
    .venv/bin/python -m bench.tune_inner_loop --encoder multilingual --dataset xsid \\
        --out bench/results/tune_inner_loop_multilingual.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from app.bootstrap import load_tier_model
from app.config import Settings
from app.meta.data import LabeledSet, load_jsonl, sample_episode
from app.ml.embedding_cache import embed_cached
from app.ml.learner import InnerLoopParams, adapt_head, head_logits
from app.ml.registry import names as tier_names
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json


def mean_cells(row: dict) -> tuple[str, str]:
    """The mean accuracy (%) and NLL cells of a grid row."""
    return f"{100 * row['accuracy']:.2f}", f"{row['nll']:.3f}"


def train_sets(data: Path, dataset: str) -> list[LabeledSet]:
    """The train split, one set per language for xSID (its `lang` field), else one set."""
    if dataset != "xsid":
        return [load_jsonl(data / f"{dataset}.jsonl", splits=["train"])]
    by_lang: dict[str, dict[str, list[str]]] = {}
    with (data / "xsid.jsonl").open(encoding="utf-8") as handle:
        for row in map(json.loads, filter(str.strip, handle)):
            if row["split"] == "train":
                by_lang.setdefault(row["lang"], {}).setdefault(row["label"], []).append(row["text"])
    return [LabeledSet(f"xsid-{lang}", by_label) for lang, by_label in sorted(by_lang.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_data_option(parser)
    parser.add_argument("--out", type=Path, default=Path("bench/results/tune_inner_loop.json"))
    parser.add_argument("--cache", type=Path, default=Path("runs/embed-cache"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--small-episodes", type=int, default=40, help="5-way episodes")
    parser.add_argument("--encoder", choices=tier_names(), default="minilm", help="the tier's frozen base")
    parser.add_argument("--dataset", choices=["banking77", "xsid"], default="banking77", help="whose train split")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 25, 50, 100], help="inner steps tried")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.02, 0.04, 0.08], help="inner learning rates tried")
    parser.add_argument("--scales", type=float, nargs="+", default=[7.5, 10.0, 15.0], help="logit scales tried")
    args = parser.parse_args()
    torch.manual_seed(0)

    settings = Settings(checkpoint="none", mpnet_checkpoint="none")
    encoder, _, _ = load_tier_model(settings, args.encoder)
    sets = train_sets(args.data, args.dataset)
    pairs = sorted({pair for train in sets for pair in train.pairs()})
    started = time.perf_counter()
    embeddings = embed_cached(encoder, [t for t, _ in pairs], args.cache)
    print(f"embedded {len(pairs)} train texts in {time.perf_counter() - started:.1f}s")
    row_of = {pair: i for i, pair in enumerate(pairs)}

    def episode_tensors(ep):
        s_idx = [row_of[(t, ep.labels[y])] for t, y in zip(ep.support_texts, ep.support_targets, strict=True)]
        q_idx = [row_of[(t, ep.labels[y])] for t, y in zip(ep.query_texts, ep.query_targets, strict=True)]
        return (
            embeddings[s_idx],
            torch.tensor(ep.support_targets),
            embeddings[q_idx],
            torch.tensor(ep.query_targets),
            ep.n_way,
        )

    def all_way(train: LabeledSet) -> int:
        return sum(len(texts) >= args.shots + args.queries for texts in train.by_label.values())

    tasks = {
        "all-way": [
            episode_tensors(sample_episode(train, all_way(train), args.shots, args.queries, random.Random(seed)))
            for train in sets
            for seed in range(args.seeds)
        ],
        "5-way": [
            episode_tensors(
                sample_episode(sets[seed % len(sets)], 5, args.shots, args.queries, random.Random(1000 + seed))
            )
            for seed in range(args.small_episodes)
        ],
    }

    grid = {"steps": args.steps, "lr": args.lrs, "scale": args.scales}
    rows = []
    for steps, lr, scale in itertools.product(grid["steps"], grid["lr"], grid["scale"]):
        if steps == 0 and lr != grid["lr"][0]:
            continue
        params = InnerLoopParams.constant(steps, lr, scale)
        row = {"steps": steps, "lr": lr, "scale": scale}
        for name, episodes in tasks.items():
            accs, nlls = [], []
            for s_emb, s_y, q_emb, q_y, n_way in episodes:
                head = adapt_head(s_emb, s_y, n_way, params, differentiable=False)
                logits = head_logits(q_emb, head, scale)
                accs.append((logits.argmax(-1) == q_y).float().mean().item())
                nlls.append(F.cross_entropy(logits, q_y).item())
            row[f"accuracy {name}"] = sum(accs) / len(accs)
            row[f"nll {name}"] = sum(nlls) / len(nlls)
        row["accuracy"] = sum(row[f"accuracy {name}"] for name in tasks) / len(tasks)
        row["nll"] = sum(row[f"nll {name}"] for name in tasks) / len(tasks)
        rows.append(row)
    rows.sort(key=lambda r: (-round(r["accuracy"], 3), r["nll"]))
    names = list(tasks)
    print_table(
        ["steps", "lr", "scale", *(f"accuracy {n}" for n in names), "mean", "NLL"],
        [
            (r["steps"], r["lr"], r["scale"], *(f"{100 * r[f'accuracy {n}']:.2f}" for n in names), *mean_cells(r))
            for r in rows[:15]
        ],
    )
    protocol = vars(args) | {"data": str(args.data), "out": str(args.out), "cache": str(args.cache)}
    write_json(args.out, {"protocol": protocol, "results": rows})


if __name__ == "__main__":
    main()
