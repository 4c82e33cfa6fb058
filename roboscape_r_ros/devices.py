"""The one way a device name ("auto", "cpu", "cuda", "cuda:1", ...) becomes a torch device."""

from __future__ import annotations

import torch

from roboscape_r_ros.config import ConfigError


def torch_device(name: str) -> torch.device:
    """``name`` as a torch device this torch build can use ("auto": CUDA where there is one), or a
    one-line ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device '{name}' is not a torch device ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but torch sees no CUDA device (use cpu or auto)")
    return device
