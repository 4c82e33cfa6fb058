"""Perceptual distance backends (effnet, lpips, ssim) behind one interface, and PSNR/SSIM metrics."""

from roboscape_r_ros.perception.distance import (
    PerceptionConfig,
    PerceptualDistance,
    SSIMDistance,
    WeightsError,
    make_distance,
)
from roboscape_r_ros.perception.metrics import psnr, ssim

__all__ = ["PerceptionConfig", "PerceptualDistance", "SSIMDistance", "WeightsError", "make_distance", "psnr", "ssim"]
