"""Cost per predicted text of `/predict` with `explain: 3` against without, over real HTTP.

A spawned `fewshot serve` (its own redis-server) holds one BANKING77 tenant: 77 labels x 5 shots from the train
split (seeded). Queries are other train texts (no test split is read). For each request size (1 and 32 texts),
requests without and with `explain` alternate back to back (A B A B ...) after a warm-up (which also builds the
tenant's support matrix once), so a drift in the machine's speed hits both alike. Reported per size: the median
client-side wall time per text of each, the server's own `timings_ms.total`, and their ratio (goal: <= 1.5).

    .venv/bin/python -m bench.explain_cost --data DATA --out bench/results/explain_cost.json
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from app.meta.data import load_jsonl
from app.ml.threads import intra_op_threads
from app.services.evidence import SupportMatrix, nearest
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.support import n_way_k_shot
from harness.server_proc import redis_and_server

TENANT = "explain-bench"
EXPLAIN = 3
GOAL = 1.5


def _timed(http: httpx.Client, body: dict[str, Any]) -> tuple[float, float, float]:
    """(client wall ms, server total ms, server head ms: the head's maths and, with explain, the evidence) of one
    /predict."""
    started = time.perf_counter()
    response = http.post("/predict", json=body)
    wall = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    timings = response.json()["timings_ms"]
    return wall, timings["total"], timings["head"]


def measure_size(http: httpx.Client, queries: list[str], size: int, pairs: int, rng: random.Random) -> dict[str, Any]:
    """Alternating plain and explained requests of `size` texts; medians per text."""
    runs: dict[str, list[tuple[float, float, float]]] = {"plain": [], "explain": []}
    for i in range(pairs + 5):
        texts = rng.sample(queries, size)
        for name, explain in (("plain", 0), ("explain", EXPLAIN)):
            timed = _timed(http, {"tenant_id": TENANT, "texts": texts, "explain": explain})
            if i >= 5:  # warm-up
                runs[name].append(timed)
    result: dict[str, Any] = {"texts_per_request": size, "pairs": pairs}
    for name, timings in runs.items():
        result[name] = {
            "wall_ms_per_text": statistics.median(t[0] for t in timings) / size,
            "server_ms_per_text": statistics.median(t[1] for t in timings) / size,
            "head_ms_per_text": statistics.median(t[2] for t in timings) / size,
        }
    result["evidence_ms_per_text"] = result["explain"]["head_ms_per_text"] - result["plain"]["head_ms_per_text"]
    result["ratio_wall"] = result["explain"]["wall_ms_per_text"] / result["plain"]["wall_ms_per_text"]
    result["ratio_server"] = result["explain"]["server_ms_per_text"] / result["plain"]["server_ms_per_text"]
    return result


def evidence_maths_us(n_labels: int, shots: int, dim: int = 384, repeats: int = 200) -> dict[str, float]:
    """In-process: median microseconds of `nearest` (one matmul, masked top-k, the reply's objects) for 1 and 32
    queries against a random unit support matrix of `n_labels` x `shots` examples (no server, no encoder), on one
    intra-op thread as the server's request math runs beside its micro-batcher."""
    generator = torch.Generator().manual_seed(0)
    m = n_labels * shots
    embeddings = torch.nn.functional.normalize(torch.randn(m, dim, generator=generator), dim=-1)
    members = torch.zeros(n_labels, m, dtype=torch.bool)
    members[torch.arange(m) // shots, torch.arange(m)] = True
    matrix = SupportMatrix(embeddings, members, [f"text {i}" for i in range(m)])
    labels = [f"label {i}" for i in range(n_labels)]
    result = {}
    for size in (1, 32):
        queries = torch.randn(size, dim, generator=generator)
        asked = [[i % n_labels, (i + 1) % n_labels] for i in range(size)]
        runs = []
        with intra_op_threads(1):
            for _ in range(repeats):
                started = time.perf_counter()
                nearest(matrix, queries, asked, EXPLAIN, labels)
                runs.append((time.perf_counter() - started) * 1e6)
        result[f"{size}_texts_us"] = statistics.median(runs)
    return result


def measure(data: Path, shots: int, pairs_1: int, pairs_32: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    train = load_jsonl(data / "banking77.jsonl", splits=["train"]).by_label
    support = n_way_k_shot(train, len(train), shots, rng)
    held = {e["text"] for e in support}
    queries = sorted({t for texts in train.values() for t in texts} - held)
    with (
        redis_and_server(extra_env={"FEWSHOT_LOG_LEVEL": "warning"}) as (_, url),
        httpx.Client(base_url=url, timeout=120) as http,
    ):
        http.post("/adapt", json={"tenant_id": TENANT, "examples": support}).raise_for_status()
        first = _timed(http, {"tenant_id": TENANT, "texts": queries[:1], "explain": EXPLAIN})  # builds the matrix
        sizes = [measure_size(http, queries, 1, pairs_1, rng), measure_size(http, queries, 32, pairs_32, rng)]
    return {
        "protocol": f"BANKING77 {len(train)}-way {shots}-shot tenant (train split, seed {seed}); queries: other "
        f"train texts; plain and explain={EXPLAIN} requests alternate back to back; medians per text; "
        "evidence_ms_per_text: the server's `head` stage (head maths + evidence) with explain minus without",
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "explain": EXPLAIN,
        "goal_ratio": GOAL,
        "first_explain_request_ms": {"wall": first[0], "server": first[1]},
        "evidence_maths_in_process_us": evidence_maths_us(len(train), shots),
        "sizes": sizes,
        "met": all(s["ratio_wall"] <= GOAL for s in sizes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_option(parser)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--pairs-1", type=int, default=200, help="plain/explain pairs of 1-text requests")
    parser.add_argument("--pairs-32", type=int, default=40, help="plain/explain pairs of 32-text requests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/explain_cost.json"))
    args = parser.parse_args(argv)
    result = measure(args.data, args.shots, args.pairs_1, args.pairs_32, args.seed)
    write_json(args.out, result)
    print_table(
        [
            "texts/request",
            "plain ms/text",
            f"explain={EXPLAIN} ms/text",
            "ratio (wall)",
            "ratio (server)",
            "evidence ms/text",
        ],
        [
            [
                s["texts_per_request"],
                f"{s['plain']['wall_ms_per_text']:.2f}",
                f"{s['explain']['wall_ms_per_text']:.2f}",
                f"{s['ratio_wall']:.2f}",
                f"{s['ratio_server']:.2f}",
                f"{s['evidence_ms_per_text']:.3f}",
            ]
            for s in result["sizes"]
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
