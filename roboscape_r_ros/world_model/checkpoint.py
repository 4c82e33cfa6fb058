"""Training safetensors files (world model, optimizer state): metadata values JSON-encoded; every failure
to read is a CheckpointError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.files import load_safetensors, save_safetensors


class CheckpointError(RoboscapeError, RuntimeError):
    """A checkpoint file that is missing, truncated, foreign or does not fit the model; names the file."""


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, object]) -> None:
    """Write tensors + JSON-encoded metadata to path atomically."""
    save_safetensors(path, tensors, {k: json.dumps(v) for k, v in metadata.items()})


def load_tensors(path: str | Path, required: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read tensors and the metadata keys `required` (JSON-decoded: values of any JSON type) from a safetensors
    file."""
    path = Path(path)
    tensors, raw = load_safetensors(path, CheckpointError, "checkpoint file")
    missing = [k for k in required if k not in raw]
    if missing:
        raise CheckpointError(f"{path}: not a roboscape_r_ros checkpoint (metadata lacks {', '.join(missing)})")
    try:
        metadata = {k: json.loads(raw[k]) for k in required}
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({err})") from None
    return tensors, metadata


def check_state_dict(path: str | Path, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError unless `tensors` has exactly the module's keys and shapes."""
    expected = {k: v.shape for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = [
            f"missing {missing[0]!r} (+{len(missing) - 1} more)" if missing else "",
            f"unexpected {unexpected[0]!r} (+{len(unexpected) - 1} more)" if unexpected else "",
        ]
        raise CheckpointError(f"{path}: tensors do not match the model: {'; '.join(p for p in parts if p)}")
    for key, shape in expected.items():
        if tensors[key].shape != shape:
            got = tuple(tensors[key].shape)
            raise CheckpointError(f"{path}: tensor {key!r} has shape {got}, the config expects {tuple(shape)}")


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """An optimizer's state as flat tensors {"<param index>.<key>": tensor} and its param groups (JSON)."""
    state = opt.state_dict()
    tensors = {f"{idx}.{key}": value for idx, entry in state["state"].items() for key, value in entry.items()}
    return tensors, state["param_groups"]


def load_optimizer(path: str | Path, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list):
    """Load what `optimizer_tensors` gave (read back from `path`) into opt; CheckpointError if it does not fit."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value  # load_state_dict moves it to the parameter's device
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path}: optimizer state does not fit the trained parameters ({err})") from None
