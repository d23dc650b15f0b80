"""Meta-trained checkpoints: encoder delta + meta-learned inner-loop parameters.

A checkpoint folder holds
  delta.safetensors   encoder tensors that differ from the base (prefix `encoder.`) and the
                      inner-loop tensors (prefix `inner.`: lr_weight, lr_bias, log_scale)
  manifest.json       base encoder sha256, algorithm, inner steps, config, metrics, provenance
  MODEL_CARD.md       what it is, how it was trained, how it scores
  multilabel.safetensors   optional: the meta-learned multi-label inner loop (`fewshot meta-train-multilabel`),
                      its sha256 and step count under `multilabel` in the manifest
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from app.ml.encoder import SentenceEncoder, sha256_file
from app.ml.learner import InnerLoopParams

DELTA_FILE = "delta.safetensors"
MANIFEST_FILE = "manifest.json"
MULTILABEL_FILE = "multilabel.safetensors"
CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, malformed, or made for another base encoder."""


def save_checkpoint(
    folder: Path,
    encoder: SentenceEncoder,
    inner: InnerLoopParams,
    trained_prefixes: list[str],
    manifest: dict[str, Any],
    encoder_dtype: torch.dtype | None = None,
) -> Path:
    """Write the encoder tensors under `trained_prefixes` plus the inner-loop tensors.

    `encoder_dtype` (e.g. float16) stores the encoder tensors in that precision to keep the file
    small; loading casts them back to the encoder's own dtype.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, value in encoder.transformer.state_dict().items():
        if any(name.startswith(prefix) for prefix in trained_prefixes):
            tensors[f"encoder.{name}"] = value.detach().cpu().to(encoder_dtype or value.dtype).contiguous().clone()
    for name, value in inner.tensors().items():
        tensors[f"inner.{name}"] = value.detach().cpu().float().contiguous().clone()
    save_file(tensors, str(folder / DELTA_FILE), metadata={"format": str(CHECKPOINT_FORMAT)})
    full_manifest = {
        "format": CHECKPOINT_FORMAT,
        "base_encoder": {"source": encoder.info.source, "sha256": encoder.info.weights_sha256},
        "inner_steps": inner.steps,
        "delta_sha256": sha256_file(folder / DELTA_FILE),
        **manifest,
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(full_manifest, indent=2, sort_keys=True) + "\n")
    return folder


def encoder_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's own state-dict entries of a delta file's tensors (prefix `encoder.` removed)."""
    return {k.removeprefix("encoder."): v for k, v in tensors.items() if k.startswith("encoder.")}


def inner_loop_params(steps: int, tensors: dict[str, torch.Tensor]) -> InnerLoopParams:
    """The inner-loop parameters of a delta file's tensors; KeyError when one is missing."""
    return InnerLoopParams(
        steps=steps,
        lr_weight=tensors["inner.lr_weight"],
        lr_bias=tensors["inner.lr_bias"],
        log_scale=tensors["inner.log_scale"],
        lr_norm=tensors.get("inner.lr_norm"),  # only in checkpoints whose inner loop adapts the norm
    )


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointError(f"no {MANIFEST_FILE} in checkpoint folder {folder}")
    return json.loads(path.read_text())


def load_checkpoint(folder: Path, encoder: SentenceEncoder) -> InnerLoopParams:
    """Apply the delta to `encoder` in place and return the meta-learned inner-loop parameters."""
    manifest = read_manifest(folder)
    if manifest.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint format {manifest.get('format')!r}, expected {CHECKPOINT_FORMAT}")
    base_sha = manifest.get("base_encoder", {}).get("sha256")
    if base_sha != encoder.info.weights_sha256:
        raise CheckpointError(
            f"checkpoint {folder} was trained on base encoder {base_sha}, "
            f"but the loaded base is {encoder.info.weights_sha256}"
        )
    delta_path = folder / DELTA_FILE
    delta_sha = sha256_file(delta_path)
    if delta_sha != manifest.get("delta_sha256"):
        raise CheckpointError(f"{delta_path} does not match the sha256 in its manifest")
    tensors = load_file(str(delta_path))
    encoder_state = encoder_tensors(tensors)
    own_state = encoder.transformer.state_dict()
    unknown = [name for name in encoder_state if name not in own_state]
    if unknown:
        raise CheckpointError(f"checkpoint holds tensors the encoder lacks: {unknown[:5]}")
    device = encoder.device
    encoder.transformer.load_state_dict({k: v.to(device) for k, v in encoder_state.items()}, strict=False)
    encoder.delta_sha256 = delta_sha
    try:
        return inner_loop_params(int(manifest["inner_steps"]), tensors)
    except KeyError as exc:
        raise CheckpointError(f"checkpoint lacks inner-loop parameter {exc}") from exc


def save_multilabel_inner(folder: Path, inner: InnerLoopParams, provenance: dict[str, Any]) -> Path:
    """Add (or replace) the multi-label inner loop of a checkpoint folder and record it in the manifest."""
    manifest = read_manifest(folder)
    path = folder / MULTILABEL_FILE
    tensors = {
        f"inner.{name}": value.detach().cpu().float().contiguous().clone() for name, value in inner.tensors().items()
    }
    save_file(tensors, str(path), metadata={"format": str(CHECKPOINT_FORMAT)})
    manifest["multilabel"] = {"sha256": sha256_file(path), "inner_steps": inner.steps, **provenance}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def load_multilabel_inner(folder: Path) -> InnerLoopParams | None:
    """The checkpoint's meta-learned multi-label inner loop, None when it has none; checked against the manifest."""
    entry = read_manifest(folder).get("multilabel")
    path = folder / MULTILABEL_FILE
    if entry is None:
        return None
    if not path.is_file() or sha256_file(path) != entry.get("sha256"):
        raise CheckpointError(f"{path} is missing or does not match the sha256 in its manifest")
    return inner_loop_params(int(entry["inner_steps"]), load_file(str(path)))
