"""Files written atomically, and safetensors weight files read with one-line errors.

    write_atomic(run / "report.md", text)                     # str or bytes
    save_safetensors(path, model.state_dict(), {"format": "x/1"})
    tensors, metadata = load_safetensors(path, CheckpointError, "checkpoint file")

A file is first written to a temporary sibling, then renamed over the target (os.replace), so a
process killed at any moment leaves the old file or the new one, never half of one. Weights are
safetensors only: reading one never runs code from the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _replace(path: str | Path, write: Callable[[Path], object]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)
    return path


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to path atomically; create its folder."""
    return _replace(path, lambda tmp: tmp.write_bytes(data.encode() if isinstance(data, str) else data))


def save_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write tensors (detached, contiguous, on the CPU) and string metadata to a safetensors file atomically."""
    # imported here: modules that only write text (run folders, reports) do not pull in torch
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return _replace(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_safetensors(
    path: str | Path, error: type[Exception], what: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file. A missing file raises ``error("<path>: no such <what>")``,
    one that safetensors cannot read ``error("<path>: not a readable safetensors file (...)")``."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise error(f"{path}: not a readable safetensors file ({err})") from None
    return tensors, metadata
