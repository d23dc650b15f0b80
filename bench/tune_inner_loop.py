"""Choose the inner loop's default steps / learning rate / scale on BANKING77's *train* split.

Support: K shots per class from train; queries: other train examples of the same classes (the test
split is never touched). Reports accuracy and NLL per setting and writes JSON.

    .venv/bin/python bench/tune_inner_loop.py --data ../shared/data --out bench/results/tune_inner_loop.json
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

from app.config import Settings
from app.meta.data import load_jsonl, sample_episode
from app.meta.embed_cache import embed_cached
from app.ml.learner import InnerLoopParams, adapt_head, head_logits
from app.services.runtime import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/tune_inner_loop.json"))
    parser.add_argument("--cache", type=Path, default=Path("runs/embed-cache"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)

    settings = Settings(checkpoint="none")
    encoder, _, _ = load_model(settings)
    train = load_jsonl(args.data / "banking77.jsonl", splits=["train"])
    pairs = train.pairs()
    started = time.perf_counter()
    embeddings = embed_cached(encoder, [t for t, _ in pairs], args.cache)
    print(f"embedded {len(pairs)} train texts in {time.perf_counter() - started:.1f}s")
    row_of = {(t, label): i for i, (t, label) in enumerate(pairs)}

    episodes = []
    for seed in range(args.seeds):
        ep = sample_episode(train, len(train.labels), args.shots, args.queries, random.Random(seed))
        s_idx = [row_of[(t, ep.labels[y])] for t, y in zip(ep.support_texts, ep.support_targets, strict=True)]
        q_idx = [row_of[(t, ep.labels[y])] for t, y in zip(ep.query_texts, ep.query_targets, strict=True)]
        episodes.append(
            (
                embeddings[s_idx],
                torch.tensor(ep.support_targets),
                embeddings[q_idx],
                torch.tensor(ep.query_targets),
                ep.n_way,
            )
        )

    grid = {"steps": [0, 10, 20, 50, 100], "lr": [0.3, 1.0, 3.0, 10.0, 30.0], "scale": [5.0, 10.0, 15.0, 20.0]}
    rows = []
    for steps, lr, scale in itertools.product(grid["steps"], grid["lr"], grid["scale"]):
        if steps == 0 and lr != grid["lr"][0]:
            continue
        params = InnerLoopParams.constant(steps, lr, scale)
        accs, nlls = [], []
        for s_emb, s_y, q_emb, q_y, n_way in episodes:
            head = adapt_head(s_emb, s_y, n_way, params, differentiable=False)
            logits = head_logits(q_emb, head, scale)
            accs.append((logits.argmax(-1) == q_y).float().mean().item())
            nlls.append(F.cross_entropy(logits, q_y).item())
        rows.append(
            {"steps": steps, "lr": lr, "scale": scale, "accuracy": sum(accs) / len(accs), "nll": sum(nlls) / len(nlls)}
        )
    rows.sort(key=lambda r: (-round(r["accuracy"], 3), r["nll"]))
    print("| steps | lr | scale | accuracy | NLL |\n|---|---|---|---|---|")
    for r in rows[:15]:
        print(f"| {r['steps']} | {r['lr']} | {r['scale']} | {100 * r['accuracy']:.2f} | {r['nll']:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "protocol": vars(args) | {"data": str(args.data), "out": str(args.out), "cache": str(args.cache)},
                "results": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
