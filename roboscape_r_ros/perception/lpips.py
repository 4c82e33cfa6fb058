"""The real LPIPS-AlexNet (Zhang et al. 2018, lpips v0.1), from weight files already on disk.

Needs two files in one folder (nothing is downloaded): torchvision's ImageNet AlexNet
`alexnet-owt-7be5be79.pth` (only `features.*` is used) and lpips's linear layers `alex.pth`
(`lin{0..4}.model.1.weight`). Both are read with torch.load(weights_only=True).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from roboscape_r_ros.perception.distance import PerceptualDistance, WeightsError, as_frames, normalized_feature_distance

ALEXNET_FILE, LINEAR_FILE = "alexnet-owt-7be5be79.pth", "alex.pth"
CHANNELS = (64, 192, 384, 256, 256)
TAPS = (1, 4, 7, 9, 11)  # ReLU outputs relu1..relu5 in torchvision's alexnet.features


def alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(),
    )


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable or non-tensor file
        raise WeightsError(f"{path}: not a readable weights file ({str(err).splitlines()[0]})") from None


class LPIPSDistance(PerceptualDistance):
    name = "lpips"
    shift: torch.Tensor  # buffers (register_buffer)
    scale: torch.Tensor

    def __init__(self, weights_dir: str | Path):
        super().__init__()
        folder = Path(weights_dir)
        missing = [str(folder / f) for f in (ALEXNET_FILE, LINEAR_FILE) if not (folder / f).is_file()]
        if missing:
            raise WeightsError(
                f"LPIPS-AlexNet weights missing: {', '.join(missing)} (torchvision ImageNet AlexNet and "
                f"lpips v0.1 {LINEAR_FILE}; use the effnet or ssim backend without them)"
            )
        self.features = alexnet_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[:, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[:, None, None])
        alexnet = {
            k.removeprefix("features."): v for k, v in _load(folder / ALEXNET_FILE).items() if k.startswith("features.")
        }
        lpips = {k.removeprefix("lin").replace(".model.1.", "."): v for k, v in _load(folder / LINEAR_FILE).items()}
        for module, state, file in ((self.features, alexnet, ALEXNET_FILE), (self.lins, lpips, LINEAR_FILE)):
            try:
                module.load_state_dict(state, strict=True)
            except RuntimeError as err:
                reason = str(err).splitlines()[0]
                raise WeightsError(f"{folder / file}: does not fit LPIPS-AlexNet ({reason})") from None
        self.requires_grad_(False)

    def embed(self, frames) -> list[torch.Tensor]:
        x = (as_frames(frames, self.device) * 2 - 1 - self.shift) / self.scale
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                taps.append(x)
        return taps

    def compare(self, a, b):
        return normalized_feature_distance(a, b, list(self.lins))
