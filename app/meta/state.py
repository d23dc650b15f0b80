"""Resumable training state without pickle: tensors in safetensors, the rest in JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

TENSORS = "trainable.safetensors"
STATE = "state.json"


def save_state(
    folder: Path,
    params: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
) -> None:
    """Write trainable tensors, optimizer moments and the JSON state (step, rng, metrics) atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"param.{k}": v.detach().cpu().contiguous().clone() for k, v in params.items()}
    opt = optimizer.state_dict()
    for index, slots in opt["state"].items():
        for key, value in slots.items():
            tensors[f"opt.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous().clone()
    tmp = folder / (TENSORS + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(folder / TENSORS)
    payload = {**state, "param_groups": opt["param_groups"]}
    (folder / (STATE + ".tmp")).write_text(json.dumps(payload, indent=1))
    (folder / (STATE + ".tmp")).replace(folder / STATE)


def load_state(
    folder: Path, params: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer
) -> dict[str, Any] | None:
    """Restore into `params` (in place) and `optimizer`; None when there is nothing to resume."""
    if not (folder / STATE).is_file() or not (folder / TENSORS).is_file():
        return None
    tensors = load_file(str(folder / TENSORS))
    state = json.loads((folder / STATE).read_text())
    with torch.no_grad():
        for name, value in params.items():
            value.copy_(tensors[f"param.{name}"].to(value.device))
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, slot = key.split(".", 2)
            slots.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": slots, "param_groups": state.pop("param_groups")})
    return state
