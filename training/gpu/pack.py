"""Collect GPU meta-training results into $OUT within its limits (8 files, 16 MB each).

Writes `results.tar.xz` (every run's log, summary and best manifest) and, for the `--keep` runs
with the best selection score, their trained encoder + inner-loop tensors split into files of at
most 15 MB (`<name>.part<i>.safetensors`).
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

from safetensors.torch import load_file, save_file

PART_BYTES = 15 * 2**20


def split_tensors(path: Path, out: Path, name: str) -> list[Path]:
    """Write the safetensors file at `path` as `<name>.part<i>.safetensors` files of at most PART_BYTES."""
    tensors = load_file(str(path))
    parts: list[dict] = [{}]
    size = 0
    for key in sorted(tensors):
        nbytes = tensors[key].numel() * tensors[key].element_size()
        if parts[-1] and size + nbytes > PART_BYTES:
            parts.append({})
            size = 0
        parts[-1][key] = tensors[key].contiguous()
        size += nbytes
    files = []
    for i, part in enumerate(parts):
        files.append(out / f"{name}.part{i}.safetensors")
        save_file(part, str(files[-1]))
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--keep", type=int, default=2, help="how many of the best runs' tensors to return")
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scores = {}
    with tarfile.open(out / "results.tar.xz", "w:xz") as tar:
        for name in args.names:
            run = Path(f"runs/{name}/run")
            files = [Path(f"runs-{name}.log"), run / "summary.json", run / "best/manifest.json"]
            for path in [*files, run / "best/algorithm.safetensors"]:
                if path.exists():
                    tar.add(path, arcname=f"{name}/{path.name}")
            if (run / "summary.json").exists():
                scores[name] = json.loads((run / "summary.json").read_text())["best"]
        table = io.BytesIO(json.dumps(scores, indent=1).encode())
        info = tarfile.TarInfo("scores.json")
        info.size = len(table.getvalue())
        tar.addfile(info, table)
    print("best selection score per run:", json.dumps(scores, indent=1))
    for name in sorted(scores, key=scores.get, reverse=True)[: args.keep]:
        for file in split_tensors(Path(f"runs/{name}/run/best/delta.safetensors"), out, name):
            print("kept", file, file.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
