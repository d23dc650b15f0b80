"""BANKING77 through the real service: /adapt with K shots per label from the train split,
/predict on the whole test split. Reports accuracy per seed.

    .venv/bin/python -m bench.accuracy_http --shots 5 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import random
import statistics
from contextlib import ExitStack
from pathlib import Path

import httpx

from app.meta.data import load_jsonl
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.support import k_shot_examples
from harness.server_proc import redis_and_server


def run(url: str, data: Path, shots: int, seed: int) -> float:
    train = load_jsonl(data / "banking77.jsonl", splits=["train"]).by_label
    test = load_jsonl(data / "banking77.jsonl", splits=["test"]).pairs()
    rng = random.Random(seed)
    examples = k_shot_examples(train, shots, rng)
    correct = 0
    with httpx.Client(base_url=url, timeout=300) as http:
        http.post("/adapt", json={"tenant_id": f"banking77-{seed}", "examples": examples}).raise_for_status()
        for start in range(0, len(test), 128):
            batch = test[start : start + 128]
            response = http.post("/predict", json={"tenant_id": f"banking77-{seed}", "texts": [t for t, _ in batch]})
            response.raise_for_status()
            predicted = [p["label"] for p in response.json()["predictions"]]
            correct += sum(p == label for p, (_, label) in zip(predicted, batch, strict=True))
    return correct / len(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server; omitted: spawn redis-server + `fewshot serve`")
    add_data_option(parser)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
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
        scores = {seed: run(url, args.data, args.shots, seed) for seed in args.seeds}
    mean = statistics.mean(scores.values())
    rows = [(seed, f"{100 * accuracy:.2f} %") for seed, accuracy in scores.items()]
    print_table(["seed", f"77-way {args.shots}-shot accuracy"], [*rows, ("mean", f"{100 * mean:.2f} %")])
    write_json(args.out, {"shots": args.shots, "server": ready, "accuracy_by_seed": scores, "mean": mean})


if __name__ == "__main__":
    main()
