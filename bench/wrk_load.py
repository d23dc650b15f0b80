"""Serving speed with a client that is not the bottleneck: `wrk` (Debian package) with a Lua script.

One `fewshot serve` process (embedded defaults unless `--env` says otherwise) and, in the same run:
- `GET /healthz` requests/s (the HTTP stack alone);
- `/predict` with 1 text per request (one connection: latency at low load; then `--connections`) and with 32 texts
  per request (texts/s, p50/p95/p99, server CPU per request);
- the raw encoder in this process on the same texts (texts/s at the merged pass size the server ran).
Server CPU outside the encoder = server CPU per request - the raw encoder's CPU per text x texts per request
(at the mean merged pass size read from the server's /metrics). `--profile` also samples the server with py-spy
during the one-text run at `--connections` and adds where its samples went (`bench/common/profile.py`).

    .venv/bin/python -m bench.wrk_load --out bench/results/wrk_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import torch

from app.bootstrap import load_model
from app.config import Settings
from app.meta.data import load_jsonl
from bench.common.data import add_data_option
from bench.common.profile import record, summarise
from bench.common.results import print_table, write_json
from bench.common.support import n_way_k_shot
from harness.ports import free_port
from harness.server_proc import served

LUA = r"""
local bodies = {}
local path = os.getenv("WRK_BODIES")
for line in io.lines(path) do bodies[#bodies + 1] = line end
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(os.getenv("WRK_METHOD"), os.getenv("WRK_PATH"), {["Content-Type"] = "application/json"},
                    bodies[i] ~= "" and bodies[i] or nil)
end
done = function(summary, latency, requests)
  local out = io.open(os.getenv("WRK_OUT"), "w")
  out:write(string.format('{"requests": %d, "seconds": %f, "errors": %d, "non2xx": %d, ',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
  out:write(string.format('"p50_ms": %f, "p95_ms": %f, "p99_ms": %f, "mean_ms": %f}',
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3, latency.mean / 1e3))
  out:close()
end
"""


def run_wrk(
    base: str, method: str, path: str, bodies: list[str], args: argparse.Namespace, pid: int, connections: int
) -> dict[str, Any]:
    """One wrk run; adds the server's CPU seconds per request."""
    with tempfile.TemporaryDirectory() as tmp:
        script, bodies_file, out = Path(tmp, "load.lua"), Path(tmp, "bodies.txt"), Path(tmp, "out.json")
        script.write_text(LUA)
        bodies_file.write_text("\n".join(bodies) + "\n")
        env = os.environ | {"WRK_BODIES": str(bodies_file), "WRK_METHOD": method, "WRK_PATH": path, "WRK_OUT": str(out)}
        server = psutil.Process(pid)
        before = server.cpu_times()
        subprocess.run(
            [
                "wrk",
                "-t",
                "1",
                "-c",
                str(connections),
                "-d",
                f"{args.duration}s",
                "--timeout",
                "30s",
                "-s",
                str(script),
                base,
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        after = server.cpu_times()
        result = json.loads(out.read_text())
    cpu_s = (after.user - before.user) + (after.system - before.system)
    result["rps"] = result["requests"] / result["seconds"]
    result["server_cpu_ms_per_request"] = 1000 * cpu_s / max(1, result["requests"])
    return result


def encoder_passes(base: str) -> tuple[float, float]:
    """(merged passes, texts) the server's encoder ran so far, from /metrics."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    count = re.search(r'fewshot_encoder_batch_texts_count\{operation="encoder_pass"\} ([0-9.e+]+)', text)
    total = re.search(r'fewshot_encoder_batch_texts_sum\{operation="encoder_pass"\} ([0-9.e+]+)', text)
    return (float(count.group(1)) if count else 0.0), (float(total.group(1)) if total else 0.0)


def raw_encoder(texts: list[str], batch: int, seconds: float) -> dict[str, float]:
    """The encoder alone in this process (serving precision from default settings): texts/s and CPU ms per text."""
    model = load_model(Settings(_env_file=None))
    encoder = model[0]
    encoder.embed(texts[:batch], batch_size=batch)  # warm up
    done, started, cpu_started = 0, time.perf_counter(), time.process_time()
    i = 0
    while time.perf_counter() - started < seconds:
        chunk = [texts[(i + j) % len(texts)] for j in range(batch)]
        encoder.embed(chunk, batch_size=batch)
        done += batch
        i += batch
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"batch": batch, "texts_per_s": done / wall, "cpu_ms_per_text": 1000 * cpu / done}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_option(parser)
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--env", nargs="*", default=[], help="extra KEY=VALUE settings for the server")
    parser.add_argument("--out", type=Path, default=Path("bench/results/wrk_load.json"))
    parser.add_argument("--profile", action="store_true", help="py-spy the server during the one-text run")
    parser.add_argument(
        "--checkout",
        type=Path,
        default=None,
        help="serve from another checkout (e.g. a `git worktree` of an older commit)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    banking = args.data / "banking77.jsonl"
    train = load_jsonl(banking, ["train"]).by_label
    queries = [text for texts in load_jsonl(banking, ["test"]).by_label.values() for text in texts]
    random.Random(0).shuffle(queries)
    support = n_way_k_shot(train, len(train), 5, random.Random(0))

    port = free_port()
    env = os.environ | {"FEWSHOT_LOG_LEVEL": "warning"} | dict(item.split("=", 1) for item in args.env)
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    if args.checkout is not None:  # that checkout's `app` package, first on the server's path
        launch = f"import sys; sys.path.insert(0, {str(args.checkout.resolve())!r}); from app.cli import main; main()"
        command = [sys.executable, "-c", launch, "serve", "--port", str(port)]
    results: dict[str, Any] = {}
    with served(command, port, env) as server:
        httpx.post(f"{server.url}/adapt", json={"tenant_id": "t0", "examples": support}, timeout=120).raise_for_status()
        one = [json.dumps({"tenant_id": "t0", "texts": [q]}) for q in queries[:2000]]
        many = [json.dumps({"tenant_id": "t0", "texts": queries[i : i + 32]}) for i in range(0, 2000, 32)]
        results["healthz"] = run_wrk(server.url, "GET", "/healthz", [""], args, server.pid, args.connections)
        results["predict_1_low_load"] = run_wrk(server.url, "POST", "/predict", one, args, server.pid, 1)
        passes_before = encoder_passes(server.url)
        with tempfile.TemporaryDirectory() as tmp:
            collapsed = Path(tmp, "profile.txt")
            spy = record(server.pid, max(1, args.duration - 4), collapsed) if args.profile else None
            results["predict_1"] = run_wrk(server.url, "POST", "/predict", one, args, server.pid, args.connections)
            if spy is not None:
                spy.wait(timeout=60)
                results["profile_predict_1"] = summarise(collapsed)
        passes_after = encoder_passes(server.url)
        results["predict_32"] = run_wrk(server.url, "POST", "/predict", many, args, server.pid, args.connections)
    n_passes, n_texts = (after - before for after, before in zip(passes_after, passes_before, strict=True))
    mean_pass = n_texts / max(1.0, n_passes)
    results["predict_1"]["mean_encoder_pass_texts"] = mean_pass
    results["predict_1"]["texts_per_s"] = results["predict_1"]["rps"]
    results["predict_32"]["texts_per_s"] = 32 * results["predict_32"]["rps"]
    raw = raw_encoder(queries, max(1, round(mean_pass)), args.duration / 2)
    raw32 = raw_encoder(queries, 32, args.duration / 2)
    results["raw_encoder"] = {"at_mean_pass": raw, "at_32": raw32}
    results["predict_1"]["server_cpu_ms_outside_encoder"] = (
        results["predict_1"]["server_cpu_ms_per_request"] - raw["cpu_ms_per_text"]
    )
    results["one_text_share_of_32"] = results["predict_1"]["texts_per_s"] / results["predict_32"]["texts_per_s"]
    results["setup"] = {
        "connections": args.connections,
        "duration_s": args.duration,
        "server_env": args.env,
        "checkout": None if args.checkout is None else str(args.checkout),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    write_json(args.out, results)
    print_table(
        ["scenario", "req/s", "texts/s", "p50 ms", "p95 ms", "p99 ms", "server CPU ms/req", "non-2xx"],
        [
            [
                name,
                f"{r['rps']:.0f}",
                f"{r.get('texts_per_s', 0):.0f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['server_cpu_ms_per_request']:.3f}",
                r["non2xx"] + r["errors"],
            ]
            for name, r in ((k, results[k]) for k in ("healthz", "predict_1_low_load", "predict_1", "predict_32"))
        ],
    )
    print(
        f"raw encoder: {raw['texts_per_s']:.0f} texts/s at batch {raw['batch']}, {raw32['texts_per_s']:.0f} at 32; "
        f"one-text share of 32-text texts/s: {results['one_text_share_of_32']:.0%}; server CPU outside the encoder "
        f"per one-text request: {results['predict_1']['server_cpu_ms_outside_encoder']:.3f} ms"
    )
    if "profile_predict_1" in results:
        profile = results["profile_predict_1"]
        print(f"py-spy, one-text /predict at {args.connections} connections ({profile['samples']} samples):")
        print_table(["part", "share of samples"], [[k, f"{v:.1%}"] for k, v in profile["by_part"].items()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
