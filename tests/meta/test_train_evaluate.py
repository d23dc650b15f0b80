"""`meta-train` end to end (resume included) and `evaluate` on the CLINC150 fixture with a tiny encoder."""

from __future__ import annotations

import json

import pytest

from app.meta.config import load_config
from app.meta.evaluate import EvalConfig, run_evaluation
from app.meta.train import meta_train
from app.ml.checkpoint import load_checkpoint
from tests.meta.tiny_config import tiny_meta_config


def test_meta_train_resumes_and_exports(make_tiny, tmp_path, clinc_sample) -> None:
    first = meta_train(tiny_meta_config(tmp_path, clinc_sample, max_steps=2), progress=False, encoder=make_tiny())
    assert first["steps"] == 2
    second = meta_train(tiny_meta_config(tmp_path, clinc_sample, max_steps=4), progress=False, encoder=make_tiny())
    assert second["steps"] == 4
    assert [h["step"] for h in second["history"]] == [0, 2, 4]
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["algorithm"] == "protomaml" and manifest["inner_loop"]["steps"] == 2
    assert "clinc150_sample" in json.dumps(manifest["config"])
    inner = load_checkpoint(tmp_path / "model", make_tiny())
    assert inner.steps == 2


def test_config_refuses_evaluation_set(tmp_path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"name": "x", "sources": [{"name": "banking77"}]}))
    with pytest.raises(ValueError, match="evaluation set"):
        load_config(path)


def test_config_refuses_to_export_weights_trained_on_experiment_only_sets(tmp_path) -> None:
    sources = [{"name": "clinc150"}, {"name": "acid"}]
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"name": "x", "sources": sources, "export_dir": "models/x"}))
    with pytest.raises(ValueError, match="acid may be used for experiments only"):
        load_config(path)
    path.write_text(json.dumps({"name": "x", "sources": sources}))  # measuring with it is fine
    assert [s.name for s in load_config(path).sources] == ["clinc150", "acid"]


def test_a_candidate_checkpoint_is_never_named_the_shipped_one() -> None:
    from app.meta.evaluate import checkpoint_label
    from app.ml.packaged import SHIPPED_CHECKPOINT

    assert checkpoint_label(SHIPPED_CHECKPOINT) == "shipped checkpoint"
    assert checkpoint_label("runs/minilm-intents/best") == "checkpoint runs/minilm-intents/best"


def test_evaluate_on_fixture(make_tiny, tmp_path, clinc_sample) -> None:
    from app.meta.algorithms import build_algorithm
    from app.meta.backbone import Backbone
    from app.meta.train import save_best
    from app.ml.learner import InnerLoopParams

    trained = make_tiny()
    cfg = tiny_meta_config(tmp_path, clinc_sample, algorithm="metasgd")
    algorithm = build_algorithm(cfg.algorithm, 32, cfg.algorithm_options)
    save_best(tmp_path / "run" / "best", cfg, trained, Backbone(trained, 1), algorithm, {"heldout_acc": 0.5})
    shipped = make_tiny()
    inner = load_checkpoint(tmp_path / "run" / "best", shipped)
    base = make_tiny()

    cfg = EvalConfig(
        data=clinc_sample,
        runs=[tmp_path / "run" / "best"],
        out_dir=tmp_path / "out",
        name="fixture",
        episodes=4,
        logreg_iters=10,
        seeds=2,
        nway_shots=(1, 5),
        allway_shots=(1, 5),
        cache_dir=None,
        base_model=(base, InnerLoopParams.constant(5, 1.0, 10.0)),
        shipped_model=(shipped, inner),
        plot=True,
    )
    result = run_evaluation(cfg)
    methods = result["results"]
    assert "**shipped checkpoint via /adapt**" in methods
    assert set(methods["frozen base + nearest centroid"]) == {
        "5-way 1-shot",
        "5-way 5-shot",
        "all-way 1-shot",
        "all-way 5-shot",
    }
    for cells in methods.values():
        for cell in cells.values():
            assert 0.0 <= cell["mean"] <= 1.0
    assert (tmp_path / "out" / "eval_fixture.png").stat().st_size > 1000
    assert "± " in (tmp_path / "out" / "eval_fixture.md").read_text()
    reference = result["paired_difference_reference"]
    assert reference.startswith("frozen base + /adapt inner loop") and reference not in result["paired_differences"]
    for method, cells in result["paired_differences"].items():
        for protocol, cell in cells.items():  # a mean of paired differences is the difference of the means
            expected = methods[method][protocol]["mean"] - methods[reference][protocol]["mean"]
            assert cell["mean"] == pytest.approx(expected, abs=1e-9)
            assert cell["n"] == methods[method][protocol]["n"]
    assert "Paired difference" in (tmp_path / "out" / "eval_fixture.md").read_text()


def test_precomputed_adapt_path_equals_real_fit(make_tiny, clinc_sample) -> None:
    """The evaluation's precomputed embeddings score the /adapt path exactly as the encoder itself does."""
    import random

    from app.meta.data import load_jsonl, sample_episode
    from app.meta.evaluate import adapt_path_scorer, precomputed_embedder
    from app.ml.embedder import EncoderEmbedder
    from app.ml.learner import InnerLoopParams

    encoder = make_tiny()
    data = load_jsonl(clinc_sample)
    precomputed = precomputed_embedder(encoder, [[t for t, _ in data.pairs()]], None)
    inner = InnerLoopParams.constant(5, 1.0, 10.0)
    episode = sample_episode(data, 5, 3, 4, random.Random(0))
    assert precomputed.fingerprint == encoder.fingerprint
    direct = adapt_path_scorer(EncoderEmbedder(encoder), inner)(episode)
    assert adapt_path_scorer(precomputed, inner)(episode) == direct


def test_anchor_keeps_the_encoder_near_where_it_started(make_tiny, tmp_path, clinc_sample) -> None:
    """The same episodes with and without the anchor term: the anchored encoder's embeddings move less."""
    texts = ["my card was declined", "how do i top up", "what is the exchange rate", "cancel my transfer"]
    start = make_tiny().embed(texts)
    drift = {}
    for weight in (0.0, 50.0):
        encoder = make_tiny()
        cfg = tiny_meta_config(tmp_path / str(weight), clinc_sample, max_steps=4, outer_lr=3e-2, anchor_weight=weight)
        meta_train(cfg, progress=False, encoder=encoder)
        drift[weight] = float((1 - (encoder.embed(texts) * start).sum(-1)).mean())
    assert drift[0.0] > 0
    assert drift[50.0] < 0.5 * drift[0.0]
