"""Single-process by default; under `torchrun` (WORLD_SIZE > 1) each rank trains on its own episodes
and gradients are averaged with all-reduce (the same arithmetic as DDP)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from app.ml.encoder import pick_device


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistContext:
    """Join the process group when launched by torchrun; pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(0, 1, pick_device(device))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return DistContext(dist.get_rank(), world_size, torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"))


def average_gradients(params: list[torch.nn.Parameter], ctx: DistContext) -> None:
    """All-reduce the gradients (missing ones count as zero) and divide by the world size."""
    if ctx.world_size == 1:
        return
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad)
        param.grad /= ctx.world_size


def broadcast_flag(flag: bool, ctx: DistContext) -> bool:
    """Rank 0's decision (e.g. stop) for every rank."""
    if ctx.world_size == 1:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def all_gather_json(value: Any, ctx: DistContext) -> list[Any]:
    """Every rank's JSON-serialisable `value`, in rank order (UTF-8 bytes in tensors: no pickle)."""
    if ctx.world_size == 1:
        return [value]
    data = torch.frombuffer(bytearray(json.dumps(value).encode("utf-8")), dtype=torch.uint8).to(ctx.device)
    sizes = [torch.zeros(1, dtype=torch.long, device=ctx.device) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, torch.tensor([data.numel()], dtype=torch.long, device=ctx.device))
    lengths = [int(size.item()) for size in sizes]
    padded = torch.zeros(max(lengths), dtype=torch.uint8, device=ctx.device)
    padded[: data.numel()] = data
    chunks = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(chunks, padded)
    return [
        json.loads(bytes(chunk[:n].cpu().tolist()).decode("utf-8")) for chunk, n in zip(chunks, lengths, strict=True)
    ]


def barrier(ctx: DistContext) -> None:
    if ctx.world_size > 1:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.world_size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
