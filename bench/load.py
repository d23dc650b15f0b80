"""Load benchmark over real HTTP: M tenants, C concurrent clients, mixed /predict and /adapt.

Systems: this service with micro-batching, the same with batching off, a naive per-request
`SentenceTransformer.encode` service (bench/naive_server.py), and the raw encoder on the same texts
(the machine's ceiling, no HTTP). Prints a table, writes JSON and a PNG.

    .venv/bin/python -m bench.load --tenants 50 --clients 32 --duration 30
    .venv/bin/python -m bench.load --systems batched --replicas 2 --env FEWSHOT_TORCH_THREADS=1 \
        --out bench/results/load_2replicas.json    # two server processes, one Redis, clients round robin
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from pathlib import Path

import httpx
import psutil

from app.bootstrap import load_model
from app.config import Settings
from app.meta.data import load_jsonl
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.stats import percentile
from bench.common.support import n_way_k_shot
from harness.ports import free_port
from harness.redis_proc import throwaway_redis
from harness.server_proc import ServerProcess, fewshot_process, served


async def drive(
    urls: list[str], train: dict[str, list[str]], queries: list[str], args: argparse.Namespace
) -> dict[str, object]:
    """Adapt the tenants, then run the clients (spread round robin over `urls`) for `duration` seconds."""
    rng = random.Random(0)
    limits = httpx.Limits(max_connections=args.clients + 4, max_keepalive_connections=args.clients + 4)
    async with AsyncExitStack() as stack:
        https = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=120, limits=limits)) for url in urls
        ]
        http = https[0]
        for tenant in range(args.tenants):
            response = await http.post(
                "/adapt", json={"tenant_id": f"t{tenant}", "examples": n_way_k_shot(train, 5, 5, rng)}
            )
            response.raise_for_status()
        latencies: dict[str, list[float]] = {"predict": [], "adapt": []}
        errors = 0
        texts_done = 0
        stop_at = time.monotonic() + args.duration

        async def client(index: int) -> None:
            nonlocal errors, texts_done
            local, http = random.Random(index), https[index % len(https)]
            while time.monotonic() < stop_at:
                tenant = f"t{local.randrange(args.tenants)}"
                if local.random() < args.adapt_fraction:
                    path, body = "/adapt", {"tenant_id": tenant, "examples": n_way_k_shot(train, 5, 5, local)}
                else:
                    texts = local.sample(queries, args.texts_per_request)
                    path, body = "/predict", {"tenant_id": tenant, "texts": texts}
                started = time.perf_counter()
                try:
                    response = await http.post(path, json=body)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = (time.perf_counter() - started) * 1000
                if not ok:
                    errors += 1
                    continue
                op = path.strip("/")
                latencies[op].append(elapsed)
                if op == "predict":
                    texts_done += args.texts_per_request

        started, cpu_started = time.monotonic(), time.process_time()
        await asyncio.gather(*(client(i) for i in range(args.clients)))
        wall, client_cpu = time.monotonic() - started, time.process_time() - cpu_started
    requests = sum(len(v) for v in latencies.values()) + errors
    return {
        "predict_texts_per_s": texts_done / wall,
        "predict_ms": {q: percentile(latencies["predict"], p) for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
        "adapt_ms": {q: percentile(latencies["adapt"], p) for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
        "requests": {op: len(v) for op, v in latencies.items()},
        "errors": errors,
        "wall_s": wall,
        "client_cpu_ms_per_request": 1000 * client_cpu / max(requests, 1),  # the load generator shares the CPU
    }


async def http_ceiling(url: str, clients: int, duration: float) -> dict[str, float]:
    """Requests/s of the same client and server on a trivial endpoint (`/healthz`): the HTTP stack's own ceiling."""
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    done = 0
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        stop_at = time.monotonic() + duration

        async def client() -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                (await http.get("/healthz")).raise_for_status()
                done += 1

        started, cpu_started = time.monotonic(), time.process_time()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall, cpu = time.monotonic() - started, time.process_time() - cpu_started
    return {"requests_per_s": done / wall, "client_cpu_ms_per_request": 1000 * cpu / max(done, 1)}


def measure(servers: list[ServerProcess], train, queries, args) -> dict[str, object]:
    """Drive the servers; their CPU and RSS are summed over the processes."""
    processes = [psutil.Process(server.pid) for server in servers]

    def cpu_s() -> float:
        return sum(t.user + t.system for t in (process.cpu_times() for process in processes))

    def rss_mb() -> float:
        return sum(process.memory_info().rss for process in processes) / 2**20

    rss_start, cpu_start = rss_mb(), cpu_s()
    result = asyncio.run(drive([server.url for server in servers], train, queries, args))
    result["cpu_percent"] = 100 * (cpu_s() - cpu_start) / float(result["wall_s"])  # 200 = both cores busy
    result["rss_mb"] = {"start": rss_start, "end": rss_mb()}
    return result


@contextmanager
def naive_server() -> Iterator[ServerProcess]:
    port = free_port()
    with served([sys.executable, "-m", "bench.naive_server", "--port", str(port)], port, dict(os.environ)) as srv:
        yield srv


def raw_encoder_throughput(queries: list[str], args: argparse.Namespace) -> float:
    """Texts per second of `encoder.embed` on the same query texts, in-process, batches of 128."""
    encoder, _, _ = load_model(Settings())
    texts = [random.Random(i).choice(queries) for i in range(args.raw_texts)]
    encoder.embed(texts[:128])  # warm-up
    started = time.perf_counter()
    encoder.embed(texts, batch_size=128)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--adapt-fraction", type=float, default=0.02)
    parser.add_argument("--raw-texts", type=int, default=2048)
    parser.add_argument("--replicas", type=int, default=1, help="`fewshot serve` processes per system, one Redis")
    parser.add_argument("--ceiling-s", type=float, default=10.0, help="seconds of GET /healthz on the batched server")
    parser.add_argument("--systems", nargs="+", default=["batched", "unbatched", "naive"])
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the fewshot servers (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/load.json"))
    args = parser.parse_args()

    banking = args.data / "banking77.jsonl"
    train = load_jsonl(banking, ["train"]).by_label
    queries = [t for texts in load_jsonl(banking, ["test"]).by_label.values() for t in texts]
    results: dict[str, object] = {}
    for system in args.systems:
        with ExitStack() as stack:
            if system == "naive":
                servers = [stack.enter_context(naive_server())]
            else:
                redis_url = stack.enter_context(throwaway_redis())
                env = dict(item.split("=", 1) for item in args.env)
                env["FEWSHOT_BATCHING_ENABLED"] = "true" if system == "batched" else "false"
                servers = [stack.enter_context(fewshot_process(redis_url, extra_env=env)) for _ in range(args.replicas)]
            results[system] = measure(servers, train, queries, args)
            if system == "batched":
                ceiling = http_ceiling(servers[0].url, args.clients, args.ceiling_s)
                results[system]["healthz"] = asyncio.run(ceiling)
            print(f"{system}: {json.dumps(results[system])}", flush=True)
    raw = raw_encoder_throughput(queries, args)
    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "raw_encoder_texts_per_s": raw,
        "systems": results,
    }
    print(
        f"\n{args.clients} clients, {args.tenants} tenants, {args.texts_per_request} text(s) per /predict, "
        f"{100 * args.adapt_fraction:.0f}% /adapt, {args.duration:.0f} s each; raw encoder {raw:.0f} texts/s\n"
    )
    print_table(
        [
            "system",
            "texts/s",
            "% of raw",
            "predict p50/p95/p99 (ms)",
            "adapt p50/p95 (ms)",
            "errors",
            "CPU %",
            "RSS MB",
        ],
        [system_row(name, row, raw) for name, row in results.items()],
    )
    if "healthz" in results.get("batched", {}):
        ceiling = results["batched"]["healthz"]
        print(
            f"\nHTTP ceiling, same client and server, GET /healthz: {ceiling['requests_per_s']:.0f} requests/s "
            f"(client CPU {ceiling['client_cpu_ms_per_request']:.2f} ms per request)"
        )
    write_json(args.out, report)
    plot(report, args.out.with_suffix(".png"))


def system_row(name: str, row: dict, raw: float) -> tuple[str, ...]:
    """One system's cells in the printed table."""
    p, a = row["predict_ms"], row["adapt_ms"]
    return (
        name,
        f"{row['predict_texts_per_s']:.0f}",
        f"{100 * row['predict_texts_per_s'] / raw:.0f} %",
        f"{p['p50']:.0f} / {p['p95']:.0f} / {p['p99']:.0f}",
        f"{a['p50']:.0f} / {a['p95']:.0f}",
        f"{row['errors']}",
        f"{row['cpu_percent']:.0f}",
        f"{row['rss_mb']['end']:.0f}",
    )


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*report["systems"], "raw encoder"]
    values = [report["systems"][n]["predict_texts_per_s"] for n in report["systems"]]
    values.append(report["raw_encoder_texts_per_s"])
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.bar(names, values, color=["#2b7bba", "#8fb8de", "#d98c8c", "#888888"][: len(names)])
    axis.set_ylabel("texts / s")
    axis.set_title("/predict throughput (statistics in load.json)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
