"""Meta-training under torchrun's environment, two CPU ranks (gloo), spawned once for the module.

Each rank trains 4 steps in one go, and 2 steps then 2 more after a resume, logging the episodes it draws.
Both ranks end with identical trained weights (gradients are averaged) that differ from the start; after a
resume every rank continues its own episode stream, exactly where the uninterrupted run would be.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "clinc150_sample.jsonl"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train(rank: int, world_size: int, port: int, folder: Path, max_steps: int) -> tuple[list[list[str]], dict]:
    """One `meta_train` call on this rank: the episodes it drew and its trained top-layer weights."""
    from app.meta.data import EpisodeMixture
    from app.meta.train import meta_train
    from tests.meta.tiny_config import tiny_meta_config
    from tests.tiny_encoder import build_tiny_encoder, packaged_tokenizer

    os.environ["MASTER_PORT"] = str(port)  # a fresh process group per call
    drawn: list[list[str]] = []
    sample = EpisodeMixture.sample

    def logged(self: EpisodeMixture, rng):  # the real sampler, recording what it returns
        episode = sample(self, rng)
        drawn.append(episode.support_texts + episode.query_texts)
        return episode

    EpisodeMixture.sample = logged  # type: ignore[method-assign]
    try:
        encoder = build_tiny_encoder(packaged_tokenizer(), seed=0)
        meta_train(
            tiny_meta_config(folder, FIXTURE, outer_lr=1e-2, max_steps=max_steps), progress=False, encoder=encoder
        )
    finally:
        EpisodeMixture.sample = sample  # type: ignore[method-assign]
    layer = {k: v.contiguous() for k, v in encoder.transformer.state_dict().items() if k.startswith("encoder.layer.1.")}
    return drawn, layer


def _rank(rank: int, world_size: int, ports: list[int], out: str) -> None:
    os.environ.update(
        {"MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": str(world_size), "RANK": str(rank), "LOCAL_RANK": str(rank)}
    )
    torch.set_num_threads(1)
    root = Path(out)
    full, full_weights = _train(rank, world_size, ports[0], root / "full", 4)
    before, _ = _train(rank, world_size, ports[1], root / "split", 2)
    after, resumed_weights = _train(rank, world_size, ports[2], root / "split", 4)  # resumes at step 2
    (root / f"episodes{rank}.json").write_text(json.dumps({"full": full, "before": before, "after": after}))
    save_file(full_weights, str(root / f"full{rank}.safetensors"))
    save_file(resumed_weights, str(root / f"resumed{rank}.safetensors"))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_rank, args=(2, [_free_port() for _ in range(3)], str(out)), nprocs=2, join=True)
    return out


@pytest.mark.slow
def test_two_ranks_train_identical_weights(two_ranks) -> None:
    rank0 = load_file(str(two_ranks / "full0.safetensors"))
    rank1 = load_file(str(two_ranks / "full1.safetensors"))
    from tests.tiny_encoder import build_tiny_encoder, packaged_tokenizer

    start = build_tiny_encoder(packaged_tokenizer(), seed=0).transformer.state_dict()
    assert rank0.keys() == rank1.keys() and rank0
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=1e-6)
    assert any(not torch.allclose(rank0[k], start[k]) for k in rank0)  # they did train
    assert (two_ranks / "full" / "run" / "summary.json").exists()  # rank 0 wrote the run


@pytest.mark.slow
def test_resumed_ranks_continue_their_own_episodes(two_ranks) -> None:
    episodes = [json.loads((two_ranks / f"episodes{rank}.json").read_text()) for rank in (0, 1)]
    for drawn in episodes:
        assert len(drawn["full"]) == 4 and len(drawn["before"]) == 2 and len(drawn["after"]) == 2
        assert drawn["before"] == drawn["full"][:2]
        assert drawn["after"] == drawn["full"][2:]  # the resumed run draws what the uninterrupted one did
    assert episodes[0]["after"] != episodes[1]["after"]  # and the ranks still draw different episodes
    saved = json.loads((two_ranks / "split" / "run" / "state" / "state.json").read_text())
    assert set(saved["rng"]) == {"0", "1"} and saved["rng"]["0"] != saved["rng"]["1"]
    for rank in (0, 1):
        resumed = load_file(str(two_ranks / f"resumed{rank}.safetensors"))
        full = load_file(str(two_ranks / f"full{rank}.safetensors"))
        for key in full:
            torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=1e-6)
