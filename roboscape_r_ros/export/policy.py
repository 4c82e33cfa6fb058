"""The goal-conditioned image policy as ONNX: its deterministic action (the Gaussian's mean).

    image, goal   uint8 [B,H,W,3] RGB at the policy's image size (B: dynamic)
    action        float32 [B,K,A] in (-1, 1): K actions per decision, A action dimensions

The preprocessing (uint8 -> float, scaling, the channel stack) is inside the graph, so a runtime
feeds camera_ingest's frames as they are. Sampling and the critic stay in torch: learning mode and
PPO need the .safetensors checkpoint.

Parity: the exported graph is run with ONNX Runtime on seeded random frames at batch 1 and 16 and
compared with torch; above ``tolerance`` (max absolute difference in action units) the export is
refused and no file is written. The exporter is torch's TorchScript one (``dynamo=False``): it needs
no onnxscript, and this graph has no data-dependent control flow for the newer exporter to capture.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from roboscape_r_ros.config import to_dict
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.files import write_atomic
from roboscape_r_ros.rl.policy import ImagePolicy

ONNX_FORMAT = "roboscape_r_ros.policy.onnx/1"  # metadata "format" of an exported policy
OPSET = 17
PARITY_BATCHES = (1, 16)


class ExportError(RoboscapeError):
    """An export that cannot be made or does not match torch."""


class PolicyMean(nn.Module):
    """ImagePolicy's mean action as a graph of two uint8 frames."""

    def __init__(self, policy: ImagePolicy):
        super().__init__()
        self.policy = policy

    def forward(self, image: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return self.policy.mean_of(image, goal)  # [B,K,A]


@dataclass(frozen=True)
class PolicyExport:
    path: Path
    max_abs_diff: float  # ONNX Runtime vs torch over the parity batches
    metadata: dict[str, str]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parity_frames(size: int, batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def export_policy(checkpoint: str | Path, output: str | Path, tolerance: float = 1e-4) -> PolicyExport:
    """Write ``checkpoint`` (an ImagePolicy .safetensors) as an ONNX file at ``output`` after a parity check."""
    import onnx
    import onnxruntime as ort

    checkpoint = Path(checkpoint)
    policy = ImagePolicy.load(checkpoint).eval()
    module, size = PolicyMean(policy), policy.cfg.image_size
    example = torch.from_numpy(parity_frames(size, 1, seed=0))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "policy.onnx"
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice: chosen on purpose (above)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module,
                (example, example),
                str(raw),
                input_names=["image", "goal"],
                output_names=["action"],
                dynamic_axes={"image": {0: "batch"}, "goal": {0: "batch"}, "action": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        model = onnx.load(str(raw))

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    diff = 0.0
    for i, batch in enumerate(PARITY_BATCHES):
        image, goal = parity_frames(size, batch, seed=2 * i + 1), parity_frames(size, batch, seed=2 * i + 2)
        with torch.no_grad():
            expected = module(torch.from_numpy(image), torch.from_numpy(goal)).numpy()
        found = session.run(["action"], {"image": image, "goal": goal})[0]
        diff = max(diff, float(np.abs(found - expected).max()))
    if not diff <= tolerance:
        raise ExportError(
            f"{checkpoint}: ONNX Runtime and torch differ by {diff:.3g} (tolerance {tolerance:g}); nothing written"
        )

    metadata = {
        "format": ONNX_FORMAT,
        "config": json.dumps(to_dict(policy.cfg)),
        "inputs": f"image, goal: uint8 [B,{size},{size},3] RGB",
        "output": f"action: float32 [B,{policy.cfg.chunk},{policy.cfg.action_dim}], the Gaussian's mean in (-1, 1)",
        "source": checkpoint.name,
        "source_sha256": sha256(checkpoint),
        "parity_max_abs_diff": f"{diff:.3g}",
        "torch": torch.__version__,
    }
    onnx.helper.set_model_props(model, metadata)
    path = write_atomic(output, model.SerializeToString())
    return PolicyExport(path, diff, metadata)
