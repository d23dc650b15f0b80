"""`fewshot classify` against the server's own 32-text throughput, side by side on one machine, in one run.

Spawns Redis and `fewshot serve` (or uses `--url`), adapts a BANKING77 5-shot tenant (train split), then cuts
`--texts` texts (BANKING77 train + test texts, shuffled, cycled) into `--rounds` slices and measures each slice on
both sides, alternating which goes first:
- server: back-to-back 32-text /predict requests, `--concurrency` in flight, one lean httpx pool (texts/s);
- classify: `fewshot_client.batch.classify_file` on the slice as a JSONL file (same batch and concurrency).
Reports the ratio of the texts/s over all slices (goal >= 0.90), then interrupts a classify run of
`--resume-texts` texts at 50 %, resumes it and counts the rows the server classified twice (goal 0).
Writes bench/results/classify_throughput.json.

    .venv/bin/python -m bench.classify_throughput --data /path/to/data
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import resource
import statistics
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil
from fewshot_client import AsyncClient
from fewshot_client.batch import Summary, classify_file

from app.meta.data import load_jsonl
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.support import k_shot_examples
from harness.redis_proc import throwaway_redis
from harness.server_proc import fewshot_process

TENANT = "classify-bench"


class CountingTransport(httpx.AsyncBaseTransport):
    """The real transport, counting the texts of /predict requests answered 200 (classified by the server)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.classified = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path == "/predict" and response.status_code == 200:
            self.classified += len(json.loads(request.content)["texts"])
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def server_rate(url: str, texts: list[str], batch: int, concurrency: int) -> dict[str, float]:
    """texts/s of back-to-back `batch`-text /predict requests with `concurrency` in flight."""
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    pending = iter(batches)
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:

        async def worker() -> None:
            for chunk in pending:
                response = await http.post("/predict", json={"tenant_id": TENANT, "texts": chunk, "top_k": 3})
                response.raise_for_status()
                response.json()

        began, cpu = time.perf_counter(), _cpu_s()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - began
    return {"seconds": seconds, "texts_per_s": len(texts) / seconds, "client_cpu_s": _cpu_s() - cpu}


async def classify_run(
    url: str, source: Path, out: Path, batch: int, concurrency: int, stop_at: int | None = None
) -> tuple[Summary, dict[str, float], int]:
    transport = CountingTransport()

    def should_stop(summary: Summary) -> bool:
        return stop_at is not None and summary.done >= stop_at

    async with AsyncClient(url, transport=transport) as client:
        began, cpu = time.perf_counter(), _cpu_s()
        summary = await classify_file(
            client, TENANT, source, out, batch_size=batch, concurrency=concurrency, top_k=3, should_stop=should_stop
        )
        seconds = time.perf_counter() - began
    rows = summary.classified + summary.errors
    timing = {"seconds": seconds, "texts_per_s": rows / seconds, "client_cpu_s": _cpu_s() - cpu}
    return summary, timing, transport.classified


def written_twice(out: Path) -> int:
    counts = Counter(json.loads(line)["row"] for line in out.read_text(encoding="utf-8").splitlines())
    return sum(n - 1 for n in counts.values() if n > 1)


def write_texts(path: Path, texts: list[str]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for index, text in enumerate(texts):
            handle.write(json.dumps({"id": index, "text": text}) + "\n")
    return path


def _rate(runs: list[dict[str, float]], texts: int) -> float:
    return texts / sum(run["seconds"] for run in runs)


async def measure(url: str, texts: list[str], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Both sides on each of `--rounds` slices of the texts, alternating which goes first (the machine's load
    drifts: paired, interleaved slices keep the comparison fair); then the interruption at 50 % and the resume."""
    await server_rate(url, texts[: args.batch * args.concurrency * 2], args.batch, args.concurrency)  # warm-up
    size = -(-len(texts) // args.rounds)
    server_runs, classify_runs = [], []
    for round_, start in enumerate(range(0, len(texts), size)):
        chunk = texts[start : start + size]
        source = write_texts(work / f"round{round_}.in.jsonl", chunk)
        for side in ("server", "classify") if round_ % 2 == 0 else ("classify", "server"):
            if side == "server":
                server_runs.append(await server_rate(url, chunk, args.batch, args.concurrency))
            else:
                out = work / f"round{round_}.out.jsonl"
                summary, timing, _ = await classify_run(url, source, out, args.batch, args.concurrency)
                assert summary.classified == len(chunk), summary
                classify_runs.append(timing)
        ratio = classify_runs[-1]["texts_per_s"] / server_runs[-1]["texts_per_s"]
        print(
            f"round {round_}: {len(chunk)} texts: server {server_runs[-1]['texts_per_s']:.1f} texts/s, "
            f"classify {classify_runs[-1]['texts_per_s']:.1f} texts/s, ratio {ratio:.3f}",
            flush=True,
        )
    resume_texts = texts[: args.resume_texts]
    source = write_texts(work / "resume.in.jsonl", resume_texts)
    out = work / "resume.out.jsonl"
    half = len(resume_texts) // 2
    first, _, sent_first = await classify_run(url, source, out, args.batch, args.concurrency, stop_at=half)
    second, _, sent_second = await classify_run(url, source, out, args.batch, args.concurrency)
    server_total, classify_total = _rate(server_runs, len(texts)), _rate(classify_runs, len(texts))
    ratios = [c["texts_per_s"] / s["texts_per_s"] for c, s in zip(classify_runs, server_runs, strict=True)]
    return {
        "server_32_text": server_runs,
        "classify": classify_runs,
        "server_texts_per_s": server_total,
        "classify_texts_per_s": classify_total,
        "ratio": classify_total / server_total,
        "ratio_per_round_median": statistics.median(ratios),
        "client_cpu_s_per_1000_texts": {
            "server_side_driver": 1000 * sum(r["client_cpu_s"] for r in server_runs) / len(texts),
            "classify": 1000 * sum(r["client_cpu_s"] for r in classify_runs) / len(texts),
        },
        "resume": {
            "texts": len(resume_texts),
            "stop_requested_at_row": half,
            "stopped_after_rows": first.done,
            "resumed_rows": second.classified + second.errors,
            "skipped_on_resume": second.skipped,
            "texts_classified_by_server": sent_first + sent_second,
            "rows_classified_twice": sent_first + sent_second - len(resume_texts),
            "rows_written_twice": written_twice(out),
            "rows_in_output": sum(1 for _ in out.open(encoding="utf-8")),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (auth off); omitted: spawn redis-server + `fewshot serve`")
    add_data_option(parser)
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10, help="slices measured on both sides, alternating")
    parser.add_argument("--resume-texts", type=int, default=10_000, help="texts of the interrupted + resumed run")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/classify_throughput.json"))
    args = parser.parse_args()
    banking = args.data / "banking77.jsonl"
    train = load_jsonl(banking, splits=["train"]).by_label
    pool = [
        t
        for split in ("train", "test")
        for texts in load_jsonl(banking, splits=[split]).by_label.values()
        for t in texts
    ]
    random.Random(args.seed).shuffle(pool)
    texts = list(itertools.islice(itertools.cycle(pool), args.texts))
    examples = k_shot_examples(train, args.shots, random.Random(args.seed))
    with ExitStack() as stack:
        url, server_pid = args.url, None
        if url is None:
            redis_url = stack.enter_context(throwaway_redis())
            server = stack.enter_context(fewshot_process(redis_url))
            url, server_pid = server.url, server.pid
        with httpx.Client(base_url=url, timeout=600) as http:
            ready = http.get("/readyz").json()
            http.post("/adapt", json={"tenant_id": TENANT, "examples": examples}).raise_for_status()
        server_cpu = psutil.Process(server_pid).cpu_times() if server_pid else None
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="classify-bench-")))
        result = asyncio.run(measure(url, texts, args, work))
        if server_pid and server_cpu is not None:
            after = psutil.Process(server_pid).cpu_times()
            result["server_cpu_s_total"] = (after.user + after.system) - (server_cpu.user + server_cpu.system)
    report = {
        "texts": args.texts,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "tenant": f"banking77 train {args.shots}-shot (seed {args.seed}), {len(examples)} examples",
        "cpus": psutil.cpu_count(),
        "server": ready,
        **result,
        "goals": {"ratio": ">= 0.90", "rows_classified_twice": 0},
    }
    resume = result["resume"]
    print_table(
        ["measure", "value"],
        [
            ("server 32-text texts/s", f"{result['server_texts_per_s']:.1f}"),
            ("fewshot classify texts/s", f"{result['classify_texts_per_s']:.1f}"),
            ("ratio (goal >= 0.90)", f"{result['ratio']:.3f}"),
            ("ratio, median of the rounds", f"{result['ratio_per_round_median']:.3f}"),
            ("rows classified twice after 50 % + resume (goal 0)", resume["rows_classified_twice"]),
            ("rows written twice", resume["rows_written_twice"]),
        ],
    )
    write_json(args.out, report)


if __name__ == "__main__":
    main()
