"""The GPU meta-training kit: staging keeps BANKING77's test split home and records intact, packing
splits tensors within the transfer limits losslessly, and a run re-attaches to the pinned base."""

from __future__ import annotations

import json
import lzma
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from training.gpu.pack import split_tensors
from training.gpu.stage import stage_data

REPO = Path(__file__).resolve().parents[2]


def test_stage_data_keeps_only_banking77_train_and_every_record(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    banking = [{"text": f"t{i}", "label": "a", "split": split} for i, split in enumerate(["train", "test", "train"])]
    (data / "banking77.jsonl").write_text("".join(json.dumps(r) + "\n" for r in banking))
    tricky = {"text": "line\u2028separator and \x85 next-line inside a text", "label": "b", "split": "train"}
    (data / "clinc150.jsonl").write_text(json.dumps(tricky, ensure_ascii=False) + "\n")
    stage_data(data, tmp_path / "out")
    staged_banking = lzma.decompress((tmp_path / "out/banking77.jsonl.xz").read_bytes()).decode().split("\n")
    assert [json.loads(line)["text"] for line in staged_banking if line] == ["t0", "t2"]
    staged_clinc = lzma.decompress((tmp_path / "out/clinc150.jsonl.xz").read_bytes()).decode()
    assert [json.loads(line) for line in staged_clinc.split("\n") if line] == [tricky]


def test_split_tensors_is_lossless_and_bounded(tmp_path, monkeypatch) -> None:
    import training.gpu.pack as pack

    monkeypatch.setattr(pack, "PART_BYTES", 4096)
    tensors = {f"encoder.t{i}": torch.randn(300 + i) for i in range(8)} | {"inner.lr_bias": torch.tensor(0.5)}
    save_file(tensors, str(tmp_path / "delta.safetensors"))
    files = split_tensors(tmp_path / "delta.safetensors", tmp_path, "run")
    assert len(files) > 1
    merged: dict[str, torch.Tensor] = {}
    for file in files:
        part = load_file(str(file))
        assert sum(t.numel() * t.element_size() for t in part.values()) <= 4096
        merged.update(part)
    assert merged.keys() == tensors.keys()
    for key, value in tensors.items():
        torch.testing.assert_close(merged[key], value)


def test_meta_cli_runs_without_the_service_stack() -> None:
    """Training machines may lack FastAPI and pydantic: `python -m app.meta.cli` must not need them."""
    code = (
        "import sys; sys.modules.update({m: None for m in ('fastapi', 'pydantic', 'pydantic_settings', 'redis')});"
        "import app.meta.train; from app.meta.cli import main; main(['meta-train', '--help'])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout


@pytest.mark.slow
def test_import_run_reattaches_trained_tensors_to_the_pinned_base(tmp_path) -> None:
    """A run trained on another copy of the base is rewritten for the pinned base, which loads it."""
    from app.ml.checkpoint import load_checkpoint, read_manifest
    from app.ml.encoder import load_encoder
    from app.ml.packaged import PACKAGED_ENCODER, PACKAGED_ENCODER_SHA256

    base = load_encoder(PACKAGED_ENCODER, PACKAGED_ENCODER_SHA256, device="cpu")
    name = "encoder.layer.5.output.dense.bias"  # the transformer's own state-dict key
    trained_bias = base.transformer.state_dict()[name] + 0.25
    parts = {
        f"encoder.{name}": trained_bias.half(),
        "inner.lr_weight": torch.tensor(0.04),
        "inner.lr_bias": torch.tensor(0.03),
        "inner.log_scale": torch.tensor(2.0),
    }
    save_file(parts, str(tmp_path / "run.part0.safetensors"))
    manifest = {
        "inner_steps": 50,
        "trained_encoder_prefixes": [name],
        "base_encoder": {"sha256": "f" * 64},
        "algorithm": "protomaml",
        "config": {"train_layers": "bias"},
        "metrics": {"step": 50},
    }
    with tarfile.open(tmp_path / "results.tar.xz", "w:xz") as tar:
        for arcname, payload in [
            ("run/manifest.json", json.dumps(manifest).encode()),
            ("run/algorithm.safetensors", b"x"),
        ]:
            (tmp_path / "member").write_bytes(payload)
            tar.add(tmp_path / "member", arcname=arcname)
    out = tmp_path / "ckpt"
    command = [
        sys.executable,
        "-m",
        "training.gpu.import_run",
        "--parts",
        str(tmp_path),
        "--name",
        "run",
        "--results",
        str(tmp_path / "results.tar.xz"),
        "--out",
        str(out),
    ]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=300)
    written = read_manifest(out)
    assert written["base_encoder"]["sha256"] == PACKAGED_ENCODER_SHA256
    assert written["trained_on"]["base_copy"]["sha256"] == "f" * 64
    inner = load_checkpoint(out, base)
    assert inner.steps == 50 and float(inner.lr_bias) == pytest.approx(0.03)
    torch.testing.assert_close(base.transformer.state_dict()[name], trained_bias, atol=1e-3, rtol=0)


def test_staged_weights_round_trip_within_int8_and_float16_error() -> None:
    from training.gpu.stage import INT8_MATRIX, pack_weights, unpack_weights

    torch.manual_seed(0)
    tensors = {INT8_MATRIX: torch.randn(50, 16), "encoder.layer.0.output.dense.weight": torch.randn(16, 16)}
    packed = pack_weights(tensors)
    assert packed[f"{INT8_MATRIX}.int8"].dtype == torch.int8 and INT8_MATRIX not in packed
    unpacked = unpack_weights(packed)
    assert unpacked.keys() == tensors.keys() and all(v.dtype == torch.float16 for v in unpacked.values())
    row_max = tensors[INT8_MATRIX].abs().amax(dim=1, keepdim=True)
    assert ((unpacked[INT8_MATRIX].float() - tensors[INT8_MATRIX]).abs() <= row_max / 127).all()
    other = "encoder.layer.0.output.dense.weight"
    torch.testing.assert_close(unpacked[other].float(), tensors[other], atol=2e-3, rtol=1e-3)


def test_stage_data_keeps_only_the_named_sources_and_banking77_train(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("banking77", "clinc150", "huffpost"):
        (data / f"{name}.jsonl").write_text(json.dumps({"text": "t", "label": "a", "split": "train"}) + "\n")
    stage_data(data, tmp_path / "out", ["clinc150"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["banking77.jsonl.xz", "clinc150.jsonl.xz"]
