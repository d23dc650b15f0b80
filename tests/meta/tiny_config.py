"""The tiny meta-training configuration the meta tests share (CLINC150 fixture, 2-layer encoder sizes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.meta.config import MetaTrainConfig


def tiny_meta_config(tmp_path: Path, data_file: Path, **extra: Any) -> MetaTrainConfig:
    """A few 2-3-way episodes from `data_file`; run state under `tmp_path/run`, export to `tmp_path/model`."""
    extra.setdefault("algorithm", "protomaml")
    extra.setdefault("outer_lr", 1e-3)
    extra.setdefault("algorithm_options", {"steps": 2, "lr": 0.5, "scale": 5.0})
    return MetaTrainConfig(
        name="tiny",
        train_layers=1,
        data_dir=str(data_file.parent),
        sources=[{"name": data_file.stem, "way": (2, 3), "splits": ["train", "test"], "cap_per_class": 12}],
        heldout_fraction=0.4,
        shots=(1, 3),
        n_query=3,
        val_every=2,
        val_shots=2,
        val_queries=3,
        banking77_val_per_class=0,
        device="cpu",
        max_tokens=32,
        run_dir=str(tmp_path / "run"),
        export_dir=str(tmp_path / "model"),
        **extra,
    )
