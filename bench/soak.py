"""Soak: sustained mixed /adapt + /predict load from many tenants; errors, server RSS drift, latency per minute.

    .venv/bin/python -m bench.soak                           # spawns redis-server + `fewshot serve`, 300 s
    .venv/bin/python -m bench.soak --duration 60 --tenants 200 --workers 8
    .venv/bin/python -m bench.soak --url http://127.0.0.1:8000 [--api-key fsk_...] [--pid 1234]

Every tenant is adapted once, then `--workers` threads loop for `--warmup` + `--duration` seconds (only the
latter measured):
pick a random tenant; with probability `--adapt-ratio` re-adapt it from a fresh 5-way 3-shot BANKING77 train
support set, else predict 1-8 test texts. RSS of the server process comes from its /metrics
(`process_resident_memory_bytes`) or /proc. Goals: zero errors, RSS growth < 5 % from the start to the end
of the measured window, stable per-minute (`--bucket-s`) latency percentiles. Prints tables; writes JSON.
"""

from __future__ import annotations

import argparse
import platform
import random
import re
import statistics
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.meta.data import load_jsonl
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.stats import percentile
from bench.common.support import n_way_k_shot
from harness.server_proc import redis_and_server


@dataclass
class Sample:
    at_s: float  # since the measured window started
    op: str
    status: int  # 0 = transport error
    ms: float


class ServerMemory:
    """RSS of the server: /metrics when it exposes the process collector, else /proc/<pid>."""

    def __init__(self, url: str, headers: dict[str, str], pid: int | None) -> None:
        self.url, self.headers, self.pid = url, headers, pid or _pid_listening_on(url)

    def rss_mb(self) -> float | None:
        try:
            text = httpx.get(f"{self.url}/metrics", headers=self.headers, timeout=10).text
            match = re.search(r"^process_resident_memory_bytes ([0-9.e+]+)$", text, re.MULTILINE)
            if match:
                return float(match.group(1)) / 2**20
        except httpx.HTTPError:
            pass
        if self.pid is not None:
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
                return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]
            except (OSError, AttributeError):
                return None
        return None


def _pid_listening_on(url: str) -> int | None:
    """The local `fewshot serve --port N` process for `url`, if any (spawned mode)."""
    port = url.rsplit(":", 1)[-1].strip("/")
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in args and b"--port" in args and port.encode() in args:
            return int(cmdline.parent.name)
    return None


def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    train = load_jsonl(args.data / "banking77.jsonl", splits=["train"]).by_label
    test = [t for texts in load_jsonl(args.data / "banking77.jsonl", splits=["test"]).by_label.values() for t in texts]
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    tenants = [f"soak-{i:04d}" for i in range(args.tenants)]
    memory = ServerMemory(url, headers, args.pid)

    rng = random.Random(args.seed)
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        for tenant in tenants:  # warm-up: every tenant has a model before the measured window
            http.post(
                "/adapt", json={"tenant_id": tenant, "examples": n_way_k_shot(train, 5, 3, rng)}
            ).raise_for_status()

    rss_after_setup = memory.rss_mb()
    samples: list[Sample] = []
    rss: list[tuple[float, float | None]] = []
    lock = threading.Lock()
    started = time.monotonic() + args.warmup  # the measured window starts after the concurrent warm-up
    deadline = started + args.duration

    def worker(seed: int) -> None:
        local = random.Random(seed)
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            while time.monotonic() < deadline:
                tenant = local.choice(tenants)
                if local.random() < args.adapt_ratio:
                    op, path = "adapt", "/adapt"
                    body: dict[str, Any] = {"tenant_id": tenant, "examples": n_way_k_shot(train, 5, 3, local)}
                else:
                    op, path = "predict", "/predict"
                    body = {"tenant_id": tenant, "texts": local.sample(test, local.randint(1, 8)), "top_k": 3}
                sent = time.monotonic()
                try:
                    status = http.post(path, json=body).status_code
                except httpx.HTTPError:
                    status = 0
                done = time.monotonic()
                if sent >= started:
                    with lock:
                        samples.append(Sample(sent - started, op, status, (done - sent) * 1000))

    threads = [threading.Thread(target=worker, args=(args.seed * 1000 + i,)) for i in range(args.workers)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, started - time.monotonic()))
    rss.append((0.0, memory.rss_mb()))
    while any(thread.is_alive() for thread in threads):
        time.sleep(min(10.0, max(0.1, deadline - time.monotonic())))
        rss.append((round(time.monotonic() - started, 1), memory.rss_mb()))
    for thread in threads:
        thread.join()
    report = summarize(samples, rss, args)
    report["rss_mb"]["after_setup"] = rss_after_setup
    return report


def summarize(samples: list[Sample], rss: list[tuple[float, float | None]], args: argparse.Namespace) -> dict:
    per_minute = []
    n_buckets = max(1, int(-(-args.duration // args.bucket_s)))
    for bucket in range(n_buckets):
        row: dict[str, Any] = {"window_s": f"{bucket * args.bucket_s:g}-{(bucket + 1) * args.bucket_s:g}"}
        in_bucket = [s for s in samples if bucket * args.bucket_s <= s.at_s < (bucket + 1) * args.bucket_s]
        for op in ("adapt", "predict"):
            ms = [s.ms for s in in_bucket if s.op == op]
            row[op] = {
                "n": len(ms),
                "errors": sum(1 for s in in_bucket if s.op == op and not 200 <= s.status < 300),
                "p50_ms": round(statistics.median(ms), 1) if ms else None,
                "p95_ms": round(percentile(ms, 0.95), 1) if ms else None,
                "p99_ms": round(percentile(ms, 0.99), 1) if ms else None,
            }
        per_minute.append(row)
    errors: dict[str, int] = {}
    for s in samples:
        if not 200 <= s.status < 300:
            errors[f"{s.op} {s.status}"] = errors.get(f"{s.op} {s.status}", 0) + 1
    first, last = rss[0][1], rss[-1][1]
    growth = None if first is None or last is None else round(100 * (last - first) / first, 2)
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "api_key"},
        "requests": len(samples),
        "throughput_rps": round(len(samples) / args.duration, 1),
        "errors": errors,
        "error_count": sum(errors.values()),
        "rss_mb": {"start": first, "end": last, "growth_pct": growth, "timeline": rss},
        "per_minute": per_minute,
        "goals": {
            "zero_errors": not errors,
            "rss_growth_below_5pct": growth is not None and growth < 5,
        },
    }


def print_report(report: dict) -> None:
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value}"

    print_table(
        ["window (s)", "op", "n", "errors", "p50 (ms)", "p95 (ms)", "p99 (ms)"],
        [
            (row["window_s"], op, row[op]["n"], row[op]["errors"], *(cell(row[op][f"p{q}_ms"]) for q in (50, 95, 99)))
            for row in report["per_minute"]
            for op in ("adapt", "predict")
        ],
    )
    mem = report["rss_mb"]
    print(
        f"\nrequests {report['requests']} ({report['throughput_rps']} req/s), errors {report['error_count']} "
        f"{report['errors'] or ''}\nserver RSS start {cell(mem['start'] and round(mem['start'], 1))} MiB, "
        f"end {cell(mem['end'] and round(mem['end'], 1))} MiB, growth {cell(mem['growth_pct'])} %\n"
        f"goals: {report['goals']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server; omitted: spawn redis-server + `fewshot serve`")
    parser.add_argument("--api-key", help="bearer key for a server with auth on")
    parser.add_argument("--pid", type=int, help="the server's pid, for RSS when /metrics is off")
    parser.add_argument("--duration", type=float, default=300.0, help="measured seconds (default 300)")
    parser.add_argument("--warmup", type=float, default=30.0, help="unmeasured seconds of the same load first")
    parser.add_argument("--server-env", action="append", default=[], help="KEY=VALUE for a spawned server")
    parser.add_argument("--bucket-s", type=float, default=60.0, help="latency table granularity (default 60 s)")
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--adapt-ratio", type=float, default=0.1, help="share of requests that are /adapt")
    parser.add_argument("--seed", type=int, default=0)
    add_data_option(parser)
    parser.add_argument("--out", type=Path, default=Path("bench/results/soak.json"))
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.url
        if url is None:
            env = {"FEWSHOT_CHECKPOINT": "none"} | dict(item.split("=", 1) for item in args.server_env)
            _, url = stack.enter_context(redis_and_server(env))
        report = run(args, url)
    report["machine"] = {"platform": platform.platform(), "python": platform.python_version()}
    print_report(report)
    write_json(args.out, report)


if __name__ == "__main__":
    main()
