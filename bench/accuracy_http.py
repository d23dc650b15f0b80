"""An intent set through the real service: /adapt with K shots per label from the train split, /predict (out-of-scope
off) on the whole test split. Reports accuracy per seed, and whether the label names (and unlabeled texts) were used.

    .venv/bin/python -m bench.accuracy_http --shots 5 --seeds 0 1 2 --label-names auto
    .venv/bin/python -m bench.accuracy_http --shots 5 --seeds 0 1 2 --label-names auto --code-labels
    .venv/bin/python -m bench.accuracy_http --dataset clinc150 --shots 5 --seeds 0 1 2
    .venv/bin/python -m bench.accuracy_http --shots 5 --seeds 0 1 2 --label-names auto --pool train

`--code-labels` renames every label to a code (`INT_0000`, ... in sorted order): a tenant whose label names carry no
words, on which names must cost nothing. `--pool train` sends the train split's other texts (the support set's
excluded) to the tenant's unlabeled pool before the measured /adapt (`--unlabeled` sets that adapt's mode).
"""

from __future__ import annotations

import argparse
import random
import statistics
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from app.meta.data import load_jsonl
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.support import k_shot_examples
from harness.server_proc import redis_and_server


def coded(labels: list[str]) -> dict[str, str]:
    """Each label's code (`INT_0000`, ...), in sorted order."""
    return {label: f"INT_{i:04d}" for i, label in enumerate(sorted(labels))}


POOL_BATCH = 5000  # texts per POST /tenants/{id}/unlabeled (the server's default max_examples)


def run(
    url: str,
    data: Path,
    dataset: str,
    shots: int,
    seed: int,
    label_names: str | None,
    code_labels: bool,
    pool: str | None = None,
    unlabeled: str | None = None,
) -> tuple[float, dict[str, Any]]:
    """Accuracy on the test split, and the /adapt reply's `label_names`, `unlabeled` and timings."""
    path = data / f"{dataset}.jsonl"
    train = load_jsonl(path, splits=["train"]).by_label
    test = load_jsonl(path, splits=["test"]).pairs()
    if code_labels:
        codes = coded(list(train))
        train = {codes[label]: texts for label, texts in train.items()}
        test = [(text, codes[label]) for text, label in test]
    examples = k_shot_examples(train, shots, random.Random(seed))
    tenant = f"{dataset}-{seed}"
    body: dict[str, Any] = {"tenant_id": tenant, "examples": examples}
    if label_names is not None:
        body["label_names"] = label_names
    if unlabeled is not None:
        body["unlabeled"] = unlabeled
    correct = 0
    with httpx.Client(base_url=url, timeout=600) as http:
        if pool == "train":
            held = {example["text"] for example in examples}
            texts = sorted({text for texts in train.values() for text in texts} - held)
            random.Random(seed).shuffle(texts)
            http.post("/adapt", json=body | {"unlabeled": "off"}).raise_for_status()  # the pool needs a tenant
            for start in range(0, len(texts), POOL_BATCH):
                kept = http.post(f"/tenants/{tenant}/unlabeled", json={"texts": texts[start : start + POOL_BATCH]})
                kept.raise_for_status()
        adapted = http.post("/adapt", json=body)
        adapted.raise_for_status()
        for start in range(0, len(test), 128):
            batch = test[start : start + 128]
            texts = [t for t, _ in batch]
            response = http.post("/predict", json={"tenant_id": tenant, "texts": texts, "oos_threshold": -1})
            response.raise_for_status()
            predicted = [p["label"] for p in response.json()["predictions"]]
            correct += sum(p == label for p, (_, label) in zip(predicted, batch, strict=True))
    reply = adapted.json()
    return correct / len(test), {key: reply.get(key) for key in ("label_names", "unlabeled", "timings_ms")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server; omitted: spawn redis-server + `fewshot serve`")
    add_data_option(parser)
    parser.add_argument("--dataset", default="banking77", help="a JSONL file of --data with train and test splits")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--label-names", choices=["auto", "on", "off"], default=None, help="default: the server's")
    parser.add_argument("--code-labels", action="store_true", help="rename labels to INT_0000, ... (no words)")
    parser.add_argument("--pool", choices=["train"], default=None, help="fill the unlabeled pool from the train split")
    parser.add_argument("--unlabeled", choices=["auto", "off"], default=None, help="/adapt's unlabeled mode")
    parser.add_argument("--checkpoint", default=None, help="FEWSHOT_CHECKPOINT for a spawned server")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for a spawned server (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/accuracy_http.json"))
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.url
        if url is None:
            env = dict(item.split("=", 1) for item in args.env)
            if args.checkpoint:
                env["FEWSHOT_CHECKPOINT"] = args.checkpoint
            _, url = stack.enter_context(redis_and_server(extra_env=env))
        with httpx.Client(base_url=url) as http:
            ready = http.get("/readyz").json()
        results = {
            seed: run(
                url,
                args.data,
                args.dataset,
                args.shots,
                seed,
                args.label_names,
                args.code_labels,
                args.pool,
                args.unlabeled,
            )
            for seed in args.seeds
        }
    scores = {seed: accuracy for seed, (accuracy, _) in results.items()}
    mean = statistics.mean(scores.values())
    rows = [(seed, f"{100 * accuracy:.2f} %") for seed, accuracy in scores.items()]
    print_table(["seed", f"{args.dataset} {args.shots}-shot accuracy"], [*rows, ("mean", f"{100 * mean:.2f} %")])
    write_json(
        args.out,
        {
            "dataset": args.dataset,
            "shots": args.shots,
            "label_names": args.label_names,
            "code_labels": args.code_labels,
            "pool": args.pool,
            "unlabeled": args.unlabeled,
            "out_of_scope": "off",
            "server": ready,
            "accuracy_by_seed": scores,
            "mean": mean,
            "adapt_by_seed": {seed: adapt for seed, (_, adapt) in results.items()},
        },
    )


if __name__ == "__main__":
    main()
