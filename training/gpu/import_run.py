"""Rebuild a service checkpoint from a GPU run's packed tensors, on the pinned base encoder.

The GPU machine trained on a float16 copy of the base (`training/gpu/stage.py`), so its checkpoint
names that copy's hash. This loads the packaged, sha256-pinned base here, applies the run's trained
encoder tensors and inner-loop parameters, and writes a checkpoint whose manifest names the pinned
base (the service refuses any other), keeping the run's config, metrics and provenance.

    python -m training.gpu.import_run --parts DIR --name gpu-clinc --results DIR/results.tar.xz --out models/NAME
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from app.ml.checkpoint import encoder_tensors, inner_loop_params, save_checkpoint
from app.ml.encoder import load_encoder
from app.ml.packaged import PACKAGED_ENCODER, PACKAGED_ENCODER_SHA256

COPIED_MANIFEST_KEYS = (
    "name",
    "algorithm",
    "serves_via_adapt",
    "inner_loop",
    "trained_encoder_prefixes",
    "config",
    "training_data",
    "metrics",
    "git_commit",
)


def read_member(results: Path, member: str) -> bytes:
    with tarfile.open(results) as tar:
        handle = tar.extractfile(member)
        if handle is None:
            raise FileNotFoundError(member)
        return handle.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", required=True, help="folder holding <name>.part<i>.safetensors")
    parser.add_argument("--name", required=True, help="the run's name")
    parser.add_argument("--results", required=True, help="results.tar.xz from training/gpu/pack.py")
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    args = parser.parse_args()
    tensors: dict[str, torch.Tensor] = {}
    for part in sorted(Path(args.parts).glob(f"{args.name}.part*.safetensors")):
        tensors.update(load_file(str(part)))
    if not tensors:
        raise SystemExit(f"no {args.name}.part*.safetensors in {args.parts}")
    trained = json.loads(read_member(Path(args.results), f"{args.name}/manifest.json"))
    encoder = load_encoder(PACKAGED_ENCODER, PACKAGED_ENCODER_SHA256, device="cpu")
    state = encoder_tensors(tensors)
    encoder.transformer.load_state_dict(state, strict=False)
    inner = inner_loop_params(int(trained["inner_steps"]), tensors)
    manifest = {key: trained[key] for key in COPIED_MANIFEST_KEYS if key in trained}
    manifest["trained_on"] = {
        "base_copy": trained["base_encoder"],
        "note": "trained on a float16 copy of the pinned base (training/gpu/stage.py), re-attached here",
    }
    dtype = next(iter(state.values())).dtype if state else torch.float32
    out = Path(args.out)
    save_checkpoint(out, encoder, inner, trained["trained_encoder_prefixes"], manifest, dtype)
    algorithm = read_member(Path(args.results), f"{args.name}/algorithm.safetensors")
    (out / "algorithm.safetensors").write_bytes(algorithm)
    print(f"wrote {out}: {sum(p.stat().st_size for p in out.iterdir()) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
