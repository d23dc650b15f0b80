"""CPFT + PIE: the label-name InfoNCE term (reference values, direction), label names as words, and names
reaching the loss through episodes and the outer step."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import torch
from torch.nn import functional as F

from app.meta.algorithms import build_algorithm, label_name_loss, supervised_contrastive_loss
from app.meta.backbone import Backbone
from app.meta.data import EpisodeMixture, LabeledSet, SourceSpec, label_names, readable_name
from app.meta.distributed import init_distributed
from app.meta.train import OuterLoop, build_training_data, meta_train
from app.ml.checkpoint import load_checkpoint
from tests.meta.tiny_config import tiny_meta_config


def test_label_name_loss_equals_the_hand_computed_value_on_two_texts_and_two_names() -> None:
    texts = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    names = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # tau = 0.5: text 0 scores (2.0, 0.0) and is label 0; text 1 scores (1.2, 1.6) and is label 1
    expected = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-0.4))) / 2
    got = label_name_loss(texts, torch.tensor([0, 1]), names, temperature=0.5)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # the same texts under swapped labels are far from their names
    swapped = label_name_loss(texts, torch.tensor([1, 0]), names, temperature=0.5)
    assert swapped.item() == pytest.approx((math.log(1 + math.exp(2.0)) + math.log(1 + math.exp(0.4))) / 2, abs=1e-6)


def test_label_name_loss_decreases_as_texts_move_to_their_names() -> None:
    torch.manual_seed(0)
    names = F.normalize(torch.randn(3, 16), dim=-1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    start = F.normalize(torch.randn(6, 16), dim=-1)
    losses = [
        label_name_loss(F.normalize((1 - t) * start + t * names[labels], dim=-1), labels, names, 0.1).item()
        for t in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    assert all(later < earlier for earlier, later in itertools.pairwise(losses)), losses


def test_supcon_with_names_is_supcon_plus_weighted_name_loss_and_ignores_names_at_weight_zero() -> None:
    torch.manual_seed(1)
    support, query = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(2, 8), dim=-1)
    targets, query_targets = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1])
    names = F.normalize(torch.randn(2, 8), dim=-1)
    options = {"steps": 3, "lr": 0.04, "scale": 10.0, "temperature": 0.2}
    texts, labels = torch.cat([support, query]), torch.cat([targets, query_targets])
    plain = supervised_contrastive_loss(texts, labels, 0.2)
    with_names = build_algorithm("supcon", 8, options | {"names_weight": 0.5})
    assert with_names.uses_names
    loss, _ = with_names.loss(support, targets, query, query_targets, 2, names=names)
    torch.testing.assert_close(loss, plain + 0.5 * label_name_loss(texts, labels, names, 0.2))
    without = build_algorithm("supcon", 8, options)
    assert not without.uses_names
    torch.testing.assert_close(without.loss(support, targets, query, query_targets, 2, names=names)[0], plain)


def test_supcon_loss_is_zero_not_nan_when_no_two_texts_share_a_label() -> None:
    embeddings = F.normalize(torch.randn(3, 4, requires_grad=True), dim=-1)
    loss = supervised_contrastive_loss(embeddings, torch.tensor([0, 1, 2]), 0.1)
    assert loss.item() == 0.0 and loss.requires_grad


@pytest.mark.parametrize(
    ("label", "words"),
    [
        ("card_arrival", "card arrival"),
        ("BookHouse", "book house"),
        ("SearchRoundtripFlights", "search roundtrip flights"),
        ("visual-studio", "visual studio"),
        ("getATMLocation", "get atm location"),
        ("huffpost_3", None),
        ("INT_0042", None),
        ("___", None),
    ],
)
def test_readable_name(label: str, words: str | None) -> None:
    assert readable_name(label) == words


def test_label_names_prefer_overrides_and_drop_unreadable_labels() -> None:
    names = label_names(["orderpizzaintent", "card_arrival", "INT_0042"], {"orderpizzaintent": "order pizza"})
    assert names == {"orderpizzaintent": "order pizza", "card_arrival": "card arrival"}


def test_mixture_episodes_carry_names_only_when_every_label_reads_as_words() -> None:
    texts = {label: [f"{label} text {i}" for i in range(6)] for label in ("card_arrival", "top_up", "huffpost_1")}
    data = LabeledSet("set", texts)
    readable = SourceSpec(data.restrict(["card_arrival", "top_up"]), way_range=(2, 2), names=label_names(texts))
    mixed = SourceSpec(data, way_range=(3, 3), names=label_names(texts))
    episode = EpisodeMixture([readable], (2, 2), 2).sample(random.Random(0))
    assert episode.names == [readable_name(label) for label in episode.labels]
    assert EpisodeMixture([mixed], (2, 2), 2).sample(random.Random(0)).names is None


def test_outer_step_hands_the_label_name_embeddings_to_the_loss(make_tiny, tmp_path, clinc_sample) -> None:
    cfg = tiny_meta_config(
        tmp_path, clinc_sample, algorithm="supcon", algorithm_options={"steps": 2, "names_weight": 1.0}
    )
    encoder = make_tiny()
    data = build_training_data(cfg)
    assert set(data.mixture.sources[0].names.values()) <= set(data.texts())
    backbone = Backbone(encoder, 1)
    algorithm = build_algorithm("supcon", encoder.dim, cfg.algorithm_options)
    seen: list[torch.Tensor | None] = []
    original = algorithm.loss

    def spy(*args, names=None):
        seen.append(names)
        return original(*args, names=names)

    algorithm.loss = spy  # type: ignore[method-assign]
    loop = OuterLoop(cfg, init_distributed("cpu"), backbone, algorithm, None)
    encoder.eval()
    episode = data.mixture.sample(random.Random(0))
    assert episode.names is not None
    before = backbone.embed(episode.names)
    loop.step(episode)
    assert seen[0] is not None and seen[0].shape == (episode.n_way, encoder.dim)
    torch.testing.assert_close(seen[0].detach(), before)


def test_meta_train_with_names_exports_a_checkpoint_served_by_the_protomaml_loop(
    make_tiny, tmp_path, clinc_sample
) -> None:
    options = {"steps": 2, "lr": 0.5, "scale": 5.0, "temperature": 0.1, "names_weight": 1.0}
    cfg = tiny_meta_config(tmp_path, clinc_sample, algorithm="supcon", algorithm_options=options, max_steps=2)
    summary = meta_train(cfg, progress=False, encoder=make_tiny())
    assert summary["steps"] == 2 and math.isfinite(summary["history"][-1]["train_loss"])
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["algorithm"] == "supcon" and manifest["serves_via_adapt"]
    assert manifest["config"]["algorithm_options"]["names_weight"] == 1.0
    inner = load_checkpoint(tmp_path / "model", make_tiny())
    assert inner.steps == 2
