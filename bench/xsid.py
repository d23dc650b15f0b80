"""xSID through the real service, per language and tier: `/adapt` with 5 examples per intent from the language's
`train` split (intents with at least 5 there), `/predict` on the language's `test` split (the tenant's intents;
out-of-scope detection off), seeds 0 1 2; plus cross-lingual (the English tenant, queries in each other language),
and, in the same run, one-text `/predict` p50 and texts/s at 32 texts per request for each tier.

    .venv/bin/pip install -e '.[multilingual]'
    .venv/bin/python -m bench.xsid --data DATA

One `fewshot serve` (with a throwaway `redis-server`) serving every tier in `--tiers`; results in
bench/results/xsid.json (mean over the 9 non-English languages beside each language).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.support import k_shot_examples
from harness import server_proc
from harness.server_proc import redis_and_server

SOURCE = "en"
SPEED_TEXTS = ["wake me up at 7", "Wie wird das Wetter morgen?", "明天会下雨吗", "hatırlatıcılarımı göster"]  # noqa: RUF001


def load_xsid(path: Path) -> dict[str, dict[str, dict[str, list[str]]]]:
    """split -> language -> label -> texts."""
    data: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    with path.open(encoding="utf-8") as handle:
        for row in map(json.loads, filter(str.strip, handle)):
            data[row["split"]][row["lang"]][row["label"]].append(row["text"])
    return data


def predict_accuracy(http: httpx.Client, tenant: str, test: dict[str, list[str]], labels: set[str]) -> float:
    """Accuracy of `tenant` on the test texts of its own labels (out-of-scope detection off)."""
    pairs = [(text, label) for label in sorted(test) if label in labels for text in test[label]]
    correct = 0
    for start in range(0, len(pairs), 128):
        batch = pairs[start : start + 128]
        body = {"tenant_id": tenant, "texts": [t for t, _ in batch], "oos_threshold": -1.0}
        response = http.post("/predict", json=body)
        response.raise_for_status()
        predicted = [p["label"] for p in response.json()["predictions"]]
        correct += sum(p == label for p, (_, label) in zip(predicted, batch, strict=True))
    return correct / len(pairs)


def run_tier(
    http: httpx.Client, tier: str, data: dict, seeds: list[int], shots: int, done: Callable[[dict], None]
) -> dict[str, Any]:
    """Per-language and cross-lingual accuracy of one tier, per seed; `done(summary so far)` after each seed."""
    langs = sorted(data["test"])
    same: dict[str, list[float]] = defaultdict(list)
    cross: dict[str, list[float]] = defaultdict(list)
    for seed in seeds:
        for lang in langs:
            train = {label: texts for label, texts in data["train"][lang].items() if len(texts) >= shots}
            examples = k_shot_examples(train, shots, random.Random(seed))
            tenant = f"xsid-{tier}-{lang}-{seed}"
            body = {"tenant_id": tenant, "encoder": tier, "examples": examples}
            http.post("/adapt", json=body).raise_for_status()
            same[lang].append(predict_accuracy(http, tenant, data["test"][lang], set(train)))
            if lang == SOURCE:
                for other in langs:
                    if other != SOURCE:
                        cross[other].append(predict_accuracy(http, tenant, data["test"][other], set(train)))
        print(f"{tier} seed {seed}: " + " ".join(f"{lang} {100 * same[lang][-1]:.1f}" for lang in langs), flush=True)
        done(summarise(same, cross))
    return summarise(same, cross)


def summarise(same: dict[str, list[float]], cross: dict[str, list[float]]) -> dict[str, Any]:
    """Means over the seeds run so far, per language, over the non-English languages and cross-lingual."""
    langs = sorted(same)
    others = [lang for lang in langs if lang != SOURCE]
    per_lang = {lang: statistics.mean(v) for lang, v in same.items()}
    per_cross = {lang: statistics.mean(v) for lang, v in cross.items()}
    return {
        "per_language": per_lang,
        "per_language_by_seed": dict(same),
        "mean_non_english": statistics.mean(per_lang[lang] for lang in others),
        "english": per_lang[SOURCE],
        "cross_lingual_from_english": per_cross,
        "cross_lingual_by_seed": dict(cross),
        "cross_lingual_mean": statistics.mean(per_cross.values()),
        "seeds_run": len(same[SOURCE]),
    }


def speed(http: httpx.Client, tier: str, repeats: int) -> dict[str, float]:
    """One-text /predict p50 (ms) and texts/s with 32 texts per request, sequential requests."""
    tenant = f"xsid-{tier}-speed"
    times = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        body = {"tenant_id": tenant, "texts": [f"{SPEED_TEXTS[i % 4]} {i}"]}  # distinct: no cached embedding
        http.post("/predict", json=body).raise_for_status()
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    batches = max(1, repeats // 4)
    for i in range(batches):
        texts = [f"{SPEED_TEXTS[j % 4]} {i} {j}" for j in range(32)]
        http.post("/predict", json={"tenant_id": tenant, "texts": texts}).raise_for_status()
    elapsed = time.perf_counter() - started
    return {
        "predict_1text_p50_ms": round(1000 * statistics.median(times[1:]), 1),
        "predict_32texts_texts_per_s": round(32 * batches / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--tiers", default="multilingual,minilm", help="served and measured, comma-separated")
    parser.add_argument("--accuracy", help="tiers whose accuracy is measured (default: all served; '': none)")
    parser.add_argument("--no-speed", dest="speed", action="store_false", help="skip the speed measurements")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=40, help="one-text /predict calls for the p50")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="seconds for the server to get ready")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/xsid.json"))
    args = parser.parse_args()
    data = load_xsid(args.data / "xsid.jsonl")
    tiers = args.tiers.split(",")
    accuracy = tiers if args.accuracy is None else [t for t in args.accuracy.split(",") if t]
    env = {"FEWSHOT_ENCODERS": args.tiers, "FEWSHOT_AUTH_ENABLED": "false"}
    env |= dict(item.split("=", 1) for item in args.env)
    protocol = {
        "shots": args.shots,
        "seeds": args.seeds,
        "support": "train split, intents with >= shots examples in the language",
        "queries": "test split of the language, the tenant's intents; oos_threshold -1 (detection off)",
        "cross_lingual": f"the {SOURCE} tenant of each seed, queries in each other language",
        "speed": "sequential requests on one server serving every tier, distinct texts",
        "server_env": env,
    }
    results: dict[str, Any] = {}
    server_proc.READY_TIMEOUT_S = args.ready_timeout  # two tiers load (and convert, the first time) before ready
    with redis_and_server(extra_env=env) as (_, url), httpx.Client(base_url=url, timeout=600) as http:
        server = http.get("/readyz").json()
        for tier in tiers:  # speed first, on an English tenant of each tier
            english = {label: texts for label, texts in data["train"][SOURCE].items() if len(texts) >= args.shots}
            examples = k_shot_examples(english, args.shots, random.Random(0))
            body = {"tenant_id": f"xsid-{tier}-speed", "encoder": tier, "examples": examples}
            http.post("/adapt", json=body).raise_for_status()
            results[tier] = {"speed": speed(http, tier, args.repeats)} if args.speed else {}
            write_json(args.out, {"protocol": protocol, "server": server, "tiers": results})
        for tier in accuracy:

            def partial(summary: dict, tier: str = tier) -> None:
                results[tier] = {"speed": results[tier].get("speed")} | summary
                write_json(args.out, {"protocol": protocol, "server": server, "tiers": results})

            run_tier(http, tier, data, args.seeds, args.shots, partial)
    langs = sorted(data["test"])
    measured = {tier: r for tier, r in results.items() if "per_language" in r}
    print_table(
        ["tier", *langs, "mean non-en", "cross-lingual mean"],
        [
            (
                tier,
                *(f"{100 * r['per_language'][lang]:.1f}" for lang in langs),
                f"{100 * r['mean_non_english']:.1f}",
                f"{100 * r['cross_lingual_mean']:.1f}",
            )
            for tier, r in measured.items()
        ],
    )
    if args.speed:
        print_table(
            ["tier", "/predict 1 text p50 ms", "texts/s, 32 per request"],
            [
                (tier, r["speed"]["predict_1text_p50_ms"], r["speed"]["predict_32texts_texts_per_s"])
                for tier, r in results.items()
            ],
        )
    write_json(args.out, {"protocol": protocol, "server": server, "tiers": results})


if __name__ == "__main__":
    main()
