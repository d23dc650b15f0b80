"""A live server's profile with py-spy (`pip install py-spy`): where its threads spend their samples, by part of
the request path, while a load runs.

`record` samples every thread of a process for a while (py-spy's default: threads that are idle, e.g. waiting on a
lock or a socket, are not sampled); `summarise` reads py-spy's collapsed stacks (`--format raw`) and gives each
sample to the first part, from the leaf up, whose pattern matches one of its frames.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# (part, substrings of "function (file)" frames): the first part that matches a sample's frames, leaf first, wins
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("encoder pass", ("torch/nn/", "transformers/", "app/ml/encoder.py", "tokenizers")),
    ("head maths", ("app/ml/head.py", "app/ml/quantize.py")),
    ("micro-batcher", ("app/ml/batching.py",)),
    ("prediction service", ("app/services/",)),
    ("our middleware", ("app/web/context.py", "app/web/gate.py", "app/web/body_limit.py", "app/access/")),
    ("metrics", ("app/web/metrics.py", "prometheus_client")),
    ("request and response models (pydantic)", ("pydantic", "fastapi/_compat", "app/web/schemas/")),
    ("FastAPI / Starlette routing", ("fastapi/", "starlette/", "app/web/")),
    ("HTTP parser and protocol (uvicorn)", ("uvicorn/", "httptools", "h11")),
    ("event loop", ("asyncio/", "uvloop", "anyio/")),
    ("threads (pool, futures, locks)", ("threading.py", "concurrent/futures")),
]


def record(pid: int, seconds: int, out: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    """Start py-spy on `pid` for `seconds` (collapsed stacks to `out`); wait on the returned process."""
    beside = Path(sys.executable).with_name("py-spy")  # the virtual environment's, without activating it
    binary = str(beside) if beside.exists() else shutil.which("py-spy")
    if binary is None:
        raise SystemExit("py-spy is missing: .venv/bin/pip install py-spy")
    command = [binary, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate)]
    command += ["--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def summarise(collapsed: Path, top: int = 12) -> dict[str, Any]:
    """Share of samples by part of the request path, and the functions with the most samples at the leaf."""
    parts: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaves[frames[-1]] += count
        parts[_part(frames)] += count
    share = {name: round(n / max(1, total), 4) for name, n in parts.most_common()}
    leaf = [{"frame": frame, "share": round(n / max(1, total), 4)} for frame, n in leaves.most_common(top)]
    return {"samples": total, "by_part": share, "top_leaf_frames": leaf}


def _part(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, patterns in PARTS:
            if any(pattern in frame for pattern in patterns):
                return name
    return "other (interpreter, C code without Python frames)"
