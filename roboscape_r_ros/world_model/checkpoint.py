"""Safetensors files with JSON metadata, written atomically; every failure to read is a CheckpointError."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from roboscape_r_ros.errors import RoboscapeError


class CheckpointError(RoboscapeError, RuntimeError):
    """A checkpoint file that is missing, truncated, foreign or does not fit the model; names the file."""


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, object]) -> None:
    """Write tensors + JSON-encoded metadata to path via a temporary file and os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in metadata.items()})
    os.replace(tmp, path)


def load_tensors(path: str | Path, required: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Read tensors and the metadata keys `required` (JSON-decoded) from a safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
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
