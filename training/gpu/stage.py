"""Stage what a GPU machine without internet needs for `training/gpu/run.sh` into `.devcarry/`.

- `encoder/`: the packaged all-MiniLM-L6-v2 in `staged.safetensors`: the token-embedding matrix as
  int8 rows (`app.ml.head.Int8Rows`; frozen in every GPU recipe), everything else float16, 34 MB
  instead of 91, so that it fits the 64 MiB transfer beside the repository and its 21 MB shipped
  checkpoint. `--unpack SRC DST` there writes a loadable float16 folder (`load_encoder` trains in
  float32). The sha256 pin does not hold for this copy, so runs there use `encoder_source` = DST;
  `training/gpu/import_run.py` re-attaches the result to the pinned base.
- `data/*.jsonl.xz`: the meta-training sources (all of `--data`, or only `--sources`), and BANKING77's *train*
  split only (model selection); its test split never leaves this machine.
- `whl/`: pure-Python wheels missing there (`higher`).

    python -m training.gpu.stage [--data ../shared/data] [--sources clinc150 ...]   # here
    python3 -m training.gpu.stage --unpack .devcarry/encoder DST   # on the GPU machine (training/gpu/run.sh)
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from app.ml.head import Int8Rows

CARRY = Path(".devcarry")
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
WHEELS = ("higher==0.2.1",)
STAGED_FILE = "staged.safetensors"
INT8_MATRIX = "embeddings.word_embeddings.weight"


def pack_weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float16 everywhere, int8 rows + float16 scales for the token-embedding matrix."""
    packed = {k: v.half().contiguous() for k, v in tensors.items() if k != INT8_MATRIX}
    rows = Int8Rows.quantize(tensors[INT8_MATRIX])
    packed[f"{INT8_MATRIX}.int8"] = rows.values
    packed[f"{INT8_MATRIX}.scales"] = rows.scales.half().contiguous()
    return packed


def unpack_weights(packed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `pack_weights`, in float16 (what `AutoModel.from_pretrained` reads)."""
    tensors = {k: v for k, v in packed.items() if not k.startswith(f"{INT8_MATRIX}.")}
    rows = Int8Rows(packed[f"{INT8_MATRIX}.int8"], packed[f"{INT8_MATRIX}.scales"].float())
    tensors[INT8_MATRIX] = rows.dequantize().half().contiguous()
    return tensors


def copy_model_files(source: Path, out: Path) -> None:
    """The model config and tokenizer files, unchanged."""
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(source / name, out / name)


def stage_encoder(out: Path) -> None:
    from app.ml.encoder import resolve_source
    from app.ml.packaged import PACKAGED_ENCODER

    source = Path(resolve_source(PACKAGED_ENCODER))
    copy_model_files(source, out)
    save_file(pack_weights(load_file(str(source / "model.safetensors"))), str(out / STAGED_FILE))


def unpack_encoder(staged: Path, out: Path) -> None:
    copy_model_files(staged, out)
    weights = unpack_weights(load_file(str(staged / STAGED_FILE)))
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})


def stage_data(data_dir: Path, out: Path, sources: list[str] | None = None) -> None:
    """Every JSONL set of `data_dir` (or only `sources`, BANKING77's train split always) as `<name>.jsonl.xz`."""
    out.mkdir(parents=True, exist_ok=True)
    keep = None if not sources else {*sources, "banking77"}
    for path in sorted(data_dir.glob("*.jsonl")):
        if keep is not None and path.stem not in keep:
            continue
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
    parser.add_argument("--sources", nargs="*", help="stage only these sets (file stems; default: every set)")
    parser.add_argument("--unpack", nargs=2, metavar=("STAGED", "DST"), help="rebuild a loadable encoder folder")
    args = parser.parse_args()
    if args.unpack:
        unpack_encoder(Path(args.unpack[0]), Path(args.unpack[1]))
        return 0
    stage_encoder(CARRY / "encoder")
    if (CARRY / "data").exists():
        shutil.rmtree(CARRY / "data")  # no set left over from an earlier staging
    stage_data(Path(args.data), CARRY / "data", args.sources)
    stage_wheels(CARRY / "whl")
    size = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file())
    print(f"staged {CARRY}/: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
