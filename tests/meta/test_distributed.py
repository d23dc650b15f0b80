"""Meta-training under torchrun's environment: two CPU ranks (gloo) average their gradients, so both end
with identical trained weights that differ from the start."""

from __future__ import annotations

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


def _rank(rank: int, world_size: int, port: int, out: str) -> None:
    from app.meta.train import meta_train
    from tests.meta.tiny_config import tiny_meta_config
    from tests.tiny_encoder import build_tiny_encoder, packaged_tokenizer

    os.environ.update(
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world_size)}
        | {"RANK": str(rank), "LOCAL_RANK": str(rank)}
    )
    torch.set_num_threads(1)
    encoder = build_tiny_encoder(packaged_tokenizer(), seed=0)
    cfg = tiny_meta_config(Path(out), FIXTURE, outer_lr=1e-2, max_steps=4)
    meta_train(cfg, progress=False, encoder=encoder)
    trained = {
        k: v.contiguous() for k, v in encoder.transformer.state_dict().items() if k.startswith("encoder.layer.1.")
    }
    save_file(trained, str(Path(out) / f"rank{rank}.safetensors"))


@pytest.mark.slow
def test_two_ranks_train_identical_weights(tmp_path) -> None:
    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    from tests.tiny_encoder import build_tiny_encoder, packaged_tokenizer

    start = build_tiny_encoder(packaged_tokenizer(), seed=0).transformer.state_dict()
    assert rank0.keys() == rank1.keys() and rank0
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=1e-6)
    assert any(not torch.allclose(rank0[k], start[k]) for k in rank0)  # they did train
    assert (tmp_path / "run" / "summary.json").exists()  # rank 0 wrote the run
