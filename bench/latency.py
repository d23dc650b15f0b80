"""Latency of /adapt and /predict over real HTTP, and Redis bytes per tenant.

    .venv/bin/python -m bench.latency            # spawns redis-server + server
    .venv/bin/python -m bench.latency --url http://127.0.0.1:8000 --redis-url redis://127.0.0.1:6379/0

Support sets are drawn from BANKING77's train split (seeded). The requests run in `--rounds` rounds (default 3);
a VM's speed drifts between rounds, so each p50 reported is the median round's, beside every round's. A spawned
server runs without the support-embedding cache, so every /adapt embeds its whole support set.
Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import redis

from app.meta.data import load_jsonl
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.stats import percentile
from bench.common.support import n_way_k_shot
from harness.server_proc import redis_and_server

COLD_ADAPT = {"FEWSHOT_EMBEDDING_CACHE_SIZE": "0"}
"""Spawned server: no support-embedding cache. Support sets drawn from BANKING77's train split share many
texts, so with the cache later /adapt calls would embed only part of their examples."""


def timed(http: httpx.Client, path: str, body: dict) -> float:
    started = time.perf_counter()
    response = http.post(path, json=body)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


def measure(url: str, redis_url: str | None, prefix: str, data: Path, reps: int, rounds: int = 1) -> dict:
    """Latency percentiles per operation (`rounds` times; p50 reported as the median round) and Redis sizes."""
    train = load_jsonl(data / "banking77.jsonl", splits=["train"]).by_label
    test_texts = [t for texts in load_jsonl(data / "banking77.jsonl", splits=["test"]).by_label.values() for t in texts]
    per_round = [latency_round(url, train, test_texts, reps, random.Random(i)) for i in range(rounds)]
    results = {}
    for name in per_round[0]:
        p50s = [r[name]["p50_ms"] for r in per_round]
        results[name] = {
            "n": sum(r[name]["n"] for r in per_round),
            "p50_ms": statistics.median(p50s),
            "p95_ms": statistics.median(r[name]["p95_ms"] for r in per_round),
            "p50_ms_by_round": p50s,
        }
    return {"latency": results, "rounds": rounds, "redis": redis_sizes(url, redis_url, prefix, train)}


def latency_round(
    url: str, train: dict[str, list[str]], test_texts: list[str], reps: int, rng: random.Random
) -> dict[str, dict]:
    """One round of sequential /adapt and /predict requests."""
    results: dict[str, dict] = {}
    with httpx.Client(base_url=url, timeout=120) as http:
        for name, n_way in (("adapt 5-way 5-shot", 5), ("adapt 77-way 5-shot", 77)):
            times = []
            for i in range(reps + 2):
                body = {"tenant_id": f"bench-{n_way}-{i % 3}", "examples": n_way_k_shot(train, n_way, 5, rng)}
                elapsed = timed(http, "/adapt", body)
                if i >= 2:  # warm-up
                    times.append(elapsed)
            results[name] = {"n": len(times), "p50_ms": statistics.median(times), "p95_ms": percentile(times, 0.95)}
        for name, n_texts in (("predict 1 text", 1), ("predict 32 texts", 32)):
            times = []
            for i in range(reps * 3 + 3):
                body = {"tenant_id": "bench-77-0", "texts": rng.sample(test_texts, n_texts)}
                elapsed = timed(http, "/predict", body)
                if i >= 3:
                    times.append(elapsed)
            results[name] = {"n": len(times), "p50_ms": statistics.median(times), "p95_ms": percentile(times, 0.95)}
    return results


def redis_sizes(url: str, redis_url: str | None, prefix: str, train: dict[str, list[str]]) -> dict[str, dict]:
    """Every Redis key of a freshly adapted 5- and 77-label tenant (one version), by `MEMORY USAGE`."""
    sizes = {}
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        for n_way in (5, 77):
            tenant = f"bench-size-{n_way}"
            body = {"tenant_id": tenant, "examples": n_way_k_shot(train, n_way, 5, random.Random(n_way))}
            httpx.post(f"{url}/adapt", json=body, timeout=120).raise_for_status()  # one version only
            keys = list(client.scan_iter(match=f"{prefix}:{{{tenant}}}:*"))
            total = sum(int(client.memory_usage(k, samples=0) or 0) for k in keys)
            model_key = f"{prefix}:{{{tenant}}}:model"
            current = client.hget(model_key, "version").decode()  # fields `<n>:head` etc. (app/store/redis.py)
            sizes[f"{n_way} labels"] = {
                "keys": sorted(k.decode().split("}:", 1)[1] for k in keys),
                "redis_bytes": total,
                "head_bytes": int(client.hstrlen(model_key, f"{current}:head")),
                "support_bytes": int(client.hstrlen(model_key, f"{current}:support")),
                "meta_bytes": int(client.hstrlen(model_key, f"{current}:meta")),
                "redis_bytes_per_label": round(total / n_way, 1),
            }
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server; omitted: spawn redis-server + `fewshot serve`")
    parser.add_argument("--redis-url", help="the server's Redis (for bytes per tenant)")
    parser.add_argument("--prefix", default="bench", help="the server's FEWSHOT_REDIS_PREFIX")
    add_data_option(parser)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="repeat the latency rounds; p50 = median round")
    parser.add_argument("--out", type=Path, default=Path("bench/results/latency.json"))
    args = parser.parse_args()
    with ExitStack() as stack:
        url, redis_url = args.url, args.redis_url
        if url is None:
            redis_url, url = stack.enter_context(redis_and_server(COLD_ADAPT))
        report = measure(url, redis_url, args.prefix, args.data, args.reps, args.rounds)
    report["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
    }
    print_table(
        ["operation", "n", "p50 (ms), median round", "p50 by round (ms)", "p95 (ms), median round"],
        [
            (
                name,
                row["n"],
                f"{row['p50_ms']:.1f}",
                " / ".join(f"{v:.1f}" for v in row["p50_ms_by_round"]),
                f"{row['p95_ms']:.1f}",
            )
            for name, row in report["latency"].items()
        ],
    )
    if report["redis"]:
        print()
        print_table(
            ["tenant (one version)", "Redis bytes, all keys", "head", "support", "meta", "bytes per label"],
            [
                (
                    name,
                    row["redis_bytes"],
                    row["head_bytes"],
                    row["support_bytes"],
                    row["meta_bytes"],
                    row["redis_bytes_per_label"],
                )
                for name, row in report["redis"].items()
            ],
        )
    write_json(args.out, report)


if __name__ == "__main__":
    main()
