"""Image-quality metrics on uint8 frames [...,H,W,3] (torch or numpy): PSNR (dB) and SSIM, per image."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_msssim import ssim as _ssim


def _float(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(frames).float()


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image [...] (peak 255); identical images give inf."""
    mse = (_float(a) - _float(b)).pow(2).mean((-3, -2, -1))
    return 10 * torch.log10(255.0**2 / mse)


def ssim(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Structural similarity per image [...] (Gaussian window 11, sigma 1.5; frames >= 11 px)."""
    x, y = _float(a), _float(b)
    lead = x.shape[:-3]
    flat = lambda t: t.reshape(-1, *t.shape[-3:]).movedim(-1, 1)  # noqa: E731  [N,3,H,W]
    return _ssim(flat(x), flat(y), data_range=255.0, size_average=False).reshape(lead)
