"""Why a batching server loads its encoder on one intra-op thread (`app.ml.threads.one_thread_by_default`).

The encoder passes run on the micro-batcher's thread with its own OpenMP team. Each mode runs in a fresh process:
- `kept`: the main thread loads the encoder with torch's default thread count (its OpenMP team keeps a worker),
  as a server without `one_thread_by_default` would;
- `single`: the main thread is set to one thread before loading (what the server does).
Then a second thread, with torch's default thread count, embeds 1 and 8 BANKING77 texts per pass: median ms per
pass, and the voluntary context switches per pass on that thread (libgomp sleeping at barriers shows up there).

    .venv/bin/python -m bench.encoder_threads --out bench/results/encoder_threads.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common.data import add_data_option
from bench.common.results import print_table, write_json

SIZES = (1, 8)


def run_mode(mode: str, data: Path, passes: int) -> dict[str, Any]:
    """In this process: load as `mode` says, then time passes from a second thread."""
    import torch

    from app.bootstrap import load_model
    from app.config import Settings
    from app.meta.data import load_jsonl

    default = torch.get_num_threads()
    if mode == "single":
        torch.set_num_threads(1)
    encoder = load_model(Settings(_env_file=None)).encoder
    texts = [t for t, _ in load_jsonl(data / "banking77.jsonl", ["test"]).pairs()]
    result: dict[str, Any] = {"mode": mode, "threads": default}

    def passes_on_a_second_thread() -> None:
        torch.set_num_threads(default)
        for size in SIZES:
            encoder.embed(texts[:size])
            times = []
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
            for i in range(passes):
                started = time.perf_counter()
                encoder.embed(texts[i * size : (i + 1) * size])
                times.append(1000 * (time.perf_counter() - started))
            switches = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - before
            result[f"{size}_texts"] = {"median_ms": statistics.median(times), "switches_per_pass": switches / passes}

    worker = threading.Thread(target=passes_on_a_second_thread)
    worker.start()
    worker.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_option(parser)
    parser.add_argument("--passes", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per mode, alternating")
    parser.add_argument("--mode", choices=["kept", "single"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("bench/results/encoder_threads.json"))
    args = parser.parse_args(argv)
    if args.mode:  # the child process
        print(json.dumps(run_mode(args.mode, args.data, args.passes)))
        return 0
    runs = []
    for _ in range(args.rounds):
        for mode in ("kept", "single"):
            command = [
                sys.executable,
                "-m",
                "bench.encoder_threads",
                "--mode",
                mode,
                "--data",
                str(args.data),
                "--passes",
                str(args.passes),
            ]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
    write_json(args.out, {"runs": runs})
    print_table(
        ["loading thread", "1 text: ms per pass", "switches per pass", "8 texts: ms per pass", "switches per pass"],
        [
            [
                "kept its OpenMP worker" if run["mode"] == "kept" else "one thread",
                f"{run['1_texts']['median_ms']:.1f}",
                f"{run['1_texts']['switches_per_pass']:.0f}",
                f"{run['8_texts']['median_ms']:.1f}",
                f"{run['8_texts']['switches_per_pass']:.0f}",
            ]
            for run in runs
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
