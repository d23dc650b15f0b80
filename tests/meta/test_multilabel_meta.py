"""Multi-label meta-training and evaluation on a committed GoEmotions sample (tiny encoder unless stated)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from app.meta.multilabel import (
    MultiLabelEvalConfig,
    MultiLabelMetaConfig,
    fit_ovr_logreg,
    meta_train_multilabel,
    run_multilabel_evaluation,
)
from app.ml.checkpoint import CheckpointError, load_multilabel_inner, save_multilabel_inner
from app.ml.learner import InnerLoopParams
from app.ml.loading import multi_label_inner_loop
from app.ml.packaged import DEFAULT_MULTILABEL_SCALE

FIXTURES = Path(__file__).parents[1] / "fixtures"
SAMPLE = "goemotions_multilabel_sample"


def test_meta_training_moves_the_inner_loop_and_reports_the_selection(make_tiny) -> None:
    cfg = MultiLabelMetaConfig(
        data_dir=FIXTURES,
        source=SAMPLE,
        pool=200,
        shots=(2, 4),
        n_query=32,
        outer_steps=6,
        outer_lr=0.1,
        select_shots=2,
        select_seeds=1,
        cache_dir=None,
        write=False,
    )
    summary = meta_train_multilabel(cfg, encoder=make_tiny())
    assert summary["learned"] != summary["start"]  # the meta-gradient reached the three scalars
    assert summary["kept"] in {"learned", "start"} and set(summary["val_micro_f1"]) == {"start", "learned"}
    assert [entry["step"] for entry in summary["history"]] == [0, 5]


def test_multilabel_inner_loop_round_trips_through_the_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format": 1}))
    assert load_multilabel_inner(folder) is None
    assert float(multi_label_inner_loop(None).scale) == pytest.approx(DEFAULT_MULTILABEL_SCALE)
    inner = InnerLoopParams.constant(17, 0.3, 12.0)
    save_multilabel_inner(folder, inner, {"trained_on": "test"})
    loaded = multi_label_inner_loop(folder)
    assert (
        loaded.steps == 17
        and float(loaded.scale) == pytest.approx(12.0)
        and float(loaded.lr_weight) == pytest.approx(0.3)
    )
    (folder / "multilabel.safetensors").write_bytes(b"tampered")
    with pytest.raises(CheckpointError):
        load_multilabel_inner(folder)


def test_balanced_logistic_regression_separates_a_separable_label() -> None:
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 0.8]])
    y = torch.tensor([[1.0], [1.0], [0.0], [0.0], [0.0]])
    w = fit_ovr_logreg(x, y)
    assert ((x.double() @ w[:-1] + w[-1] >= 0).float() == y.double()).all()


def test_evaluation_scores_every_method_on_the_same_supports(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(FIXTURES / f"{SAMPLE}.jsonl", data / f"{SAMPLE}.jsonl")
    cfg = MultiLabelEvalConfig(
        data_dir=data, sets=(SAMPLE,), shots=(2,), seeds=2, out=tmp_path / "eval.json", cache_dir=None
    )
    results = run_multilabel_evaluation(cfg)
    runs = results["sets"][SAMPLE]["runs"]
    assert len(runs) == 3  # logistic regression, base + inner loop, the shipped checkpoint's /adapt path
    for by_k in runs.values():
        assert [run["seed"] for run in by_k["K=2"]] == [0, 1]
        assert all(0.0 <= run["micro_f1"] <= 1.0 for run in by_k["K=2"])
    sizes = {tuple(run["n_support"] for run in by_k["K=2"]) for by_k in runs.values()}
    assert len(sizes) == 1  # same support sets for every method
    assert json.loads((tmp_path / "eval.json").read_text())["sets"][SAMPLE]["summary"]
    assert "micro-F1" in results["markdown"]
