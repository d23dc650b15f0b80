"""`encoder: "auto"` through the real service (redis-server + `fewshot serve` with two tiers served).

1. xSID, each non-English language, 5 examples per intent (intents with >= 5) from `train`, seeds as given:
   which tier `auto` picks (goal: the multilingual tier for >= 95 % of tenants) and the tenant's accuracy on the
   language's `test` split.
2. BANKING77 all-way K-shot from `train`, the whole `test` split, out-of-scope detection off: `auto` against
   each tier fixed, same support sets (goal: within 0.5 points of the best fixed tier).

    .venv/bin/python -m bench.auto_tier --data DATA --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections import Counter, defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from app.meta.data import load_jsonl
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.support import k_shot_examples
from harness.server_proc import redis_and_server

TIERS = ("minilm", "multilingual")
ENGLISH = "en"
OOS_OFF = -1.0
BATCH = 128


def accuracy(http: httpx.Client, tenant: str, pairs: list[tuple[str, str]]) -> float:
    correct = 0
    for start in range(0, len(pairs), BATCH):
        batch = pairs[start : start + BATCH]
        body = {"tenant_id": tenant, "texts": [t for t, _ in batch], "oos_threshold": OOS_OFF}
        response = http.post("/predict", json=body)
        response.raise_for_status()
        predicted = [p["label"] for p in response.json()["predictions"]]
        correct += sum(p == label for p, (_, label) in zip(predicted, batch, strict=True))
    return correct / len(pairs)


def adapt(http: httpx.Client, tenant: str, examples: list[dict[str, str]], encoder: str) -> dict[str, Any]:
    response = http.post("/adapt", json={"tenant_id": tenant, "examples": examples, "encoder": encoder})
    response.raise_for_status()
    return response.json()


def xsid_rows(data: Path) -> dict[str, dict[str, list[dict[str, str]]]]:
    """language -> split -> rows."""
    import json

    rows: dict[str, dict[str, list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    with open(data / "xsid.jsonl", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            rows[row["lang"]][row["split"]].append(row)
    return rows


def xsid_auto(http: httpx.Client, data: Path, shots: int, seeds: list[int]) -> dict[str, Any]:
    rows = xsid_rows(data)
    picks: dict[str, list[str]] = {}
    scores: dict[str, list[float]] = {}
    for language in sorted(rows):
        if language == ENGLISH:
            continue
        by_label: dict[str, list[str]] = defaultdict(list)
        for row in rows[language]["train"]:
            by_label[row["label"]].append(row["text"])
        usable = {label: texts for label, texts in by_label.items() if len(texts) >= shots}
        test = [(r["text"], r["label"]) for r in rows[language]["test"] if r["label"] in usable]
        for seed in seeds:
            tenant = f"xsid-{language}-{seed}"
            reply = adapt(http, tenant, k_shot_examples(usable, shots, random.Random(seed)), "auto")
            picks.setdefault(language, []).append(reply["encoder"])
            scores.setdefault(language, []).append(accuracy(http, tenant, test))
    chosen = Counter(tier for tiers in picks.values() for tier in tiers)
    total = sum(chosen.values())
    return {
        "picks": picks,
        "accuracy": scores,
        "multilingual_share": chosen["multilingual"] / total if total else 0.0,
        "mean_accuracy": statistics.mean(statistics.mean(s) for s in scores.values()),
    }


def banking_auto(http: httpx.Client, data: Path, shots: int, seeds: list[int]) -> dict[str, Any]:
    train = load_jsonl(data / "banking77.jsonl", splits=["train"]).by_label
    test = load_jsonl(data / "banking77.jsonl", splits=["test"]).pairs()
    scores: dict[str, list[float]] = defaultdict(list)
    picks: list[str] = []
    for seed in seeds:
        examples = k_shot_examples(train, shots, random.Random(seed))
        for encoder in (*TIERS, "auto"):
            tenant = f"banking77-{encoder}-{seed}"
            reply = adapt(http, tenant, examples, encoder)
            if encoder == "auto":
                picks.append(reply["encoder"])
            scores[encoder].append(accuracy(http, tenant, test))
    means = {encoder: statistics.mean(values) for encoder, values in scores.items()}
    best_fixed = max(means[t] for t in TIERS)
    return {
        "accuracy": dict(scores),
        "mean": means,
        "picks": picks,
        "auto_minus_best_fixed": means["auto"] - best_fixed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("bench/results/auto_tier.json"))
    args = parser.parse_args()
    env = {"FEWSHOT_ENCODERS": ",".join(TIERS)}
    with ExitStack() as stack:
        _, url = stack.enter_context(redis_and_server(extra_env=env))
        with httpx.Client(base_url=url, timeout=600) as http:
            ready = http.get("/readyz").json()
            xsid = xsid_auto(http, args.data, args.shots, args.seeds)
            banking = banking_auto(http, args.data, args.shots, args.seeds)
    print_table(
        ["xSID language", "auto picked", "accuracy"],
        [
            (language, ", ".join(xsid["picks"][language]), f"{100 * statistics.mean(xsid['accuracy'][language]):.1f} %")
            for language in xsid["picks"]
        ],
    )
    print(f"multilingual picked for {100 * xsid['multilingual_share']:.1f} % of non-English tenants")
    print_table(
        ["BANKING77 encoder", f"{args.shots}-shot accuracy"],
        [(encoder, f"{100 * mean:.2f} %") for encoder, mean in banking["mean"].items()],
    )
    print(f"auto minus best fixed tier: {100 * banking['auto_minus_best_fixed']:+.2f} points; picks {banking['picks']}")
    write_json(
        args.out, {"shots": args.shots, "seeds": args.seeds, "server": ready, "xsid": xsid, "banking77": banking}
    )


if __name__ == "__main__":
    main()
