"""Perceptual distance D(frame, goal) for the endogenous reward r = (1 - D) + 10 * [done >= 0.9].

Backends behind one interface (uint8 frames [B,H,W,3] vs goal frames [B or 1,H,W,3] -> [B]):
  effnet  offline default: uncalibrated LPIPS-style distance on ImageNet EfficientNet-Lite0 features
  lpips   the real LPIPS-AlexNet (v0.1), only when its weight files are on disk
  ssim    1 - SSIM, no weights
`embed` and `compare` are split so a fixed goal is embedded once per episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim
from torch import nn

from roboscape_r_ros.config import option
from roboscape_r_ros.errors import RoboscapeError


class WeightsError(RoboscapeError, FileNotFoundError):
    """Network weights that are missing or do not fit the network; the message names the files."""


PerceptualBackend = Literal["effnet", "lpips", "ssim"]


@dataclass
class PerceptionConfig:
    backend: PerceptualBackend = option("effnet", help="perceptual distance of the reward")
    resolution: int = option(128, help="effnet input side, frames are resized to it (0 = as given); lpips: frame size")
    lpips_dir: str = option("", help="folder holding alexnet-owt-7be5be79.pth and alex.pth (lpips backend only)")
    device: str = option("cpu", help="torch device of the distance network")


def as_frames(frames: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [B,H,W,3] (numpy or torch) -> float [B,3,H,W] in [0,1] on device."""
    return torch.as_tensor(frames, device=device).permute(0, 3, 1, 2).float() / 255


def resize(x: torch.Tensor, side: int) -> torch.Tensor:
    if side <= 0 or x.shape[-2:] == (side, side):
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=x.shape[-1] > side)


class PerceptualDistance(nn.Module):
    name: str

    def embed(self, frames: np.ndarray | torch.Tensor) -> Any:
        """uint8 frames [B,H,W,3] -> whatever `compare` takes (features)."""
        raise NotImplementedError

    def compare(self, a: Any, b: Any) -> torch.Tensor:
        """Distance [B] between embeddings of batch B and of batch B or 1 (broadcast)."""
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, frames: np.ndarray | torch.Tensor, goals: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self.compare(self.embed(frames), self.embed(goals))

    @property
    def device(self) -> torch.device:
        return next(self.buffers(), torch.empty(0)).device


def normalized_feature_distance(a: list[torch.Tensor], b: list[torch.Tensor], weights: list[nn.Module] | None = None):
    """LPIPS form: unit-normalise channels per location, squared difference, (weighted) channel sum,
    spatial mean, sum over layers. Feature maps [B,C,h,w]; returns [B]."""
    total: torch.Tensor | int = 0
    for i, (x, y) in enumerate(zip(a, b)):
        diff = (F.normalize(x, dim=1, eps=1e-10) - F.normalize(y, dim=1, eps=1e-10)) ** 2  # [B,C,h,w]
        per_location = weights[i](diff) if weights is not None else diff.sum(1, keepdim=True)  # [B,1,h,w]
        total = total + per_location.mean((1, 2, 3))
    return total


class SSIMDistance(PerceptualDistance):
    name = "ssim"

    def __init__(self, device: str | torch.device = "cpu"):
        super().__init__()
        self.register_buffer("_device", torch.empty(0, device=device), persistent=False)  # follows .to()

    def embed(self, frames):
        return as_frames(frames, self.device)

    def compare(self, a, b):
        return 1 - ssim(a, b.expand_as(a), data_range=1.0, size_average=False)


def make_distance(cfg: PerceptionConfig) -> PerceptualDistance:
    if cfg.backend == "ssim":
        return SSIMDistance(cfg.device)
    if cfg.backend == "effnet":
        from .effnet import EffNetDistance

        return EffNetDistance(resolution=cfg.resolution).to(cfg.device).eval()
    from roboscape_r_ros.perception.lpips import LPIPSDistance

    return LPIPSDistance(Path(cfg.lpips_dir)).to(cfg.device).eval()
