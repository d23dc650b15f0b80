"""A million tenants, measured on 100,000: Redis memory per tenant and /predict latency on head-cache misses vs hits.

    .venv/bin/python -m bench.million_tenants            # spawns redis-server + server
    .venv/bin/python -m bench.million_tenants --tenants 2000 --requests 100   # a quick look

1. A throwaway `redis-server` and one `fewshot serve` process on it. One real tenant is adapted over HTTP (10
   BANKING77 labels x 5 examples): its head shows what the service stores (int8 rows, adapted norm or not).
2. `--tenants` synthetic tenants are written through `RedisStore.save` (8 concurrent writers, not HTTP): 10
   BANKING77 labels x 5 training texts each, a real `TenantHead` from random unit embeddings (the real one's
   structure), real metadata (`records.build_meta`, the server's encoder fingerprint), one retained version.
   Redis memory per tenant = `used_memory` delta / tenants; extrapolated to 1,000,000 tenants on a cluster.
3. /predict over HTTP, one text per request, alternating: a tenant drawn at random from all of them (the server's
   head LRU holds 1024, so practically always a miss: read + checksum + decode) and one of a warm set of 32
   tenants (always a hit). p50/p95/p99 of each.
Writes bench/results/million_tenants.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import redis
import torch

from app.meta.data import load_jsonl
from app.ml.head import TenantHead
from app.ml.learner import HeadTensors
from app.services.records import build_meta
from app.store import RedisStore
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.stats import percentile
from bench.common.support import n_way_k_shot
from harness.redis_proc import throwaway_redis
from harness.server_proc import fewshot_process

PREFIX = "million"
LABELS, SHOTS, DIM = 10, 5, 384
GOAL_BYTES_PER_TENANT = 12 * 1024
WARM_TENANTS = 32


def synthetic_head(labels: list[str], reference: TenantHead, rng: torch.Generator) -> bytes:
    """A head shaped like the service's: prototype-initialised weights from random unit class means."""
    prototypes = torch.nn.functional.normalize(torch.randn(len(labels), DIM, generator=rng), dim=1)
    weight = 2.0 * prototypes + 0.05 * torch.randn(len(labels), DIM, generator=rng)
    gain = shift = None
    if reference.norm_gain is not None:
        gain = 1.0 + 0.01 * torch.randn(DIM, generator=rng)
        shift = 0.01 * torch.randn(DIM, generator=rng)
    head = HeadTensors(weight=weight, bias=-(prototypes * prototypes).sum(dim=1), norm_gain=gain, norm_shift=shift)
    return TenantHead.from_tensors(labels, head, reference.scale, prototypes, 0.42).to_bytes()


def write_tenants(store: RedisStore, count: int, train: dict, reference: TenantHead, fingerprint: str) -> float:
    """`count` synthetic tenants through the store; returns seconds taken."""

    def write(index: int) -> None:
        rng = random.Random(index)
        support = n_way_k_shot(train, LABELS, SHOTS, rng)
        labels = sorted({example["label"] for example in support})
        head = synthetic_head(labels, reference, torch.Generator().manual_seed(index))
        meta = build_meta(head, labels, {label: SHOTS for label in labels}, fingerprint, 50)
        store.save(tenant_name(index), head, meta, support)

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        for done, _ in enumerate(pool.map(write, range(count), chunksize=64), start=1):
            if done % 10_000 == 0:
                print(f"  {done} tenants written ({time.perf_counter() - started:.0f} s)", flush=True)
    return time.perf_counter() - started


def tenant_name(index: int) -> str:
    return f"tenant-{index:07d}"


def memory_report(client: redis.Redis, before: dict, tenants: int) -> dict[str, Any]:
    """Memory per tenant from `INFO memory` deltas, and one tenant's keys and fields by size."""
    after = client.info("memory")
    per_tenant = (after["used_memory"] - before["used_memory"]) / tenants
    dataset = (after["used_memory_dataset"] - before["used_memory_dataset"]) / tenants
    model_key, seq_key = f"{PREFIX}:{{{tenant_name(0)}}}:model", f"{PREFIX}:{{{tenant_name(0)}}}:seq"
    fields = {field: int(client.hstrlen(model_key, f"1:{field}")) for field in ("head", "meta", "support")}
    return {
        "tenants": tenants,
        "used_memory_bytes_per_tenant": round(per_tenant, 1),
        "used_memory_dataset_bytes_per_tenant": round(dataset, 1),
        "goal_bytes_per_tenant": GOAL_BYTES_PER_TENANT,
        "keys_per_tenant": 2,
        "memory_usage_model_key": int(client.memory_usage(model_key, samples=0) or 0),
        "memory_usage_seq_key": int(client.memory_usage(seq_key, samples=0) or 0),
        "stored_field_bytes": fields,
        "rss_bytes_after": after["used_memory_rss"],
        "extrapolated_1m_tenants_gb": round(per_tenant * 1_000_000 / 1e9, 2),
        "extrapolated_1m_per_primary_gb_3_primaries": round(per_tenant * 1_000_000 / 3 / 1e9, 2),
        "extrapolated_1m_with_one_replica_each_gb": round(2 * per_tenant * 1_000_000 / 1e9, 2),
    }


def latency_report(url: str, tenants: int, requests: int, texts: list[str]) -> dict[str, Any]:
    """/predict latency, alternating a random (cold) tenant and a warm one."""
    rng = random.Random(7)
    warm = [tenant_name(index) for index in range(WARM_TENANTS)]
    timings: dict[str, list[float]] = {"miss": [], "hit": []}
    with httpx.Client(base_url=url, timeout=60) as http:
        for tenant in warm:  # load the warm set into the head cache
            http.post("/predict", json={"tenant_id": tenant, "texts": ["hello"]}).raise_for_status()
        for _ in range(requests):
            for kind, tenant in (
                ("miss", tenant_name(rng.randrange(WARM_TENANTS, tenants))),
                ("hit", rng.choice(warm)),
            ):
                started = time.perf_counter()
                response = http.post("/predict", json={"tenant_id": tenant, "texts": [rng.choice(texts)]})
                timings[kind].append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
    report: dict[str, Any] = {
        kind: {
            "n": len(values),
            "p50_ms": round(percentile(values, 0.5), 2),
            "p95_ms": round(percentile(values, 0.95), 2),
            "p99_ms": round(percentile(values, 0.99), 2),
            "mean_ms": round(statistics.fmean(values), 2),
        }
        for kind, values in timings.items()
    }
    report["p99_miss_over_hit"] = round(report["miss"]["p99_ms"] / report["hit"]["p99_ms"], 2)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser, help="folder with banking77.jsonl")
    parser.add_argument("--tenants", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=400, help="/predict requests of each kind")
    parser.add_argument("--out", type=Path, default=Path("bench/results/million_tenants.json"))
    args = parser.parse_args()
    dataset = load_jsonl(args.data / "banking77.jsonl", splits=["train", "test"])
    train = load_jsonl(args.data / "banking77.jsonl", splits=["train"]).by_label
    texts = [text for values in dataset.by_label.values() for text in values]

    with ExitStack() as stack:
        redis_url = stack.enter_context(throwaway_redis())
        server = stack.enter_context(
            fewshot_process(redis_url, prefix=PREFIX, extra_env={"FEWSHOT_KEEP_VERSIONS": "1"})
        )
        client = redis.Redis.from_url(redis_url)
        store = RedisStore(redis_url, prefix=PREFIX, keep_versions=1)
        with httpx.Client(base_url=server.url, timeout=300) as http:
            fingerprint = http.get("/readyz").json()["encoder_fingerprint"]
            examples = n_way_k_shot(train, LABELS, SHOTS, random.Random(-1))
            http.post("/adapt", json={"tenant_id": "reference", "examples": examples}).raise_for_status()
        reference_stored = store.load("reference")
        assert reference_stored is not None
        reference = TenantHead.from_bytes(reference_stored.head)
        before = client.info("memory")
        print(f"writing {args.tenants} tenants through the store ...", flush=True)
        write_s = write_tenants(store, args.tenants, train, reference, fingerprint)
        memory = memory_report(client, before, args.tenants)
        memory["reference_head_bytes"] = len(reference_stored.head)
        memory["synthetic_head_bytes"] = memory["stored_field_bytes"]["head"]
        memory["write_seconds"] = round(write_s, 1)
        print(f"/predict: {args.requests} misses and {args.requests} hits ...", flush=True)
        latency = latency_report(server.url, args.tenants, args.requests, texts)

    report = {
        "command": "python -m bench.million_tenants",
        "args": {"tenants": args.tenants, "requests": args.requests},
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform()},
        "note": "shared 2-core VM, other jobs running: latencies carry CPU contention",
        "memory": memory,
        "predict_latency": latency,
    }
    write_json(args.out, report)
    print_table(
        ["measure", "value"],
        [
            ["Redis bytes per 10-label tenant (used_memory delta)", memory["used_memory_bytes_per_tenant"]],
            [
                "1,000,000 tenants (GB, primaries / with 1 replica each)",
                f"{memory['extrapolated_1m_tenants_gb']} / {memory['extrapolated_1m_with_one_replica_each_gb']}",
            ],
            ["/predict miss p50/p95/p99 ms", "/".join(str(latency["miss"][k]) for k in ("p50_ms", "p95_ms", "p99_ms"))],
            ["/predict hit p50/p95/p99 ms", "/".join(str(latency["hit"][k]) for k in ("p50_ms", "p95_ms", "p99_ms"))],
            ["p99 miss / p99 hit", latency["p99_miss_over_hit"]],
        ],
    )


if __name__ == "__main__":
    main()
