"""The goal-conditioned image policy as ONNX: its deterministic action (the Gaussian's mean).

    image, goal   uint8 [B,H,W,3] RGB at the policy's image size (B: dynamic)
    action        float32 [B,K,A] in (-1, 1): K actions per decision, A action dimensions

The preprocessing (uint8 -> float, scaling, the channel stack) is inside the graph, so a runtime
feeds camera_ingest's frames as they are. Sampling and the critic stay in torch: learning mode and
PPO need the .safetensors checkpoint.

Parity: the exported graph is run with ONNX Runtime on seeded random frames at batch 1 and 16 and
compared with torch; above ``tolerance`` (max absolute difference in action units) the export is
refused and no file is written (export/graph.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from roboscape_r_ros.config import to_dict
from roboscape_r_ros.export.graph import PARITY_BATCHES, Graph, parity_frames, sha256, to_onnx, write_onnx
from roboscape_r_ros.rl.policy import ImagePolicy

ONNX_FORMAT = "roboscape_r_ros.policy.onnx/1"  # metadata "format" of an exported policy


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


def export_policy(checkpoint: str | Path, output: str | Path, tolerance: float = 1e-4) -> PolicyExport:
    """Write ``checkpoint`` (an ImagePolicy .safetensors) as an ONNX file at ``output`` after a parity check."""
    checkpoint = Path(checkpoint)
    policy = ImagePolicy.load(checkpoint).eval()
    size = policy.cfg.image_size
    cases = [
        {"image": parity_frames(size, batch, seed=2 * i + 1), "goal": parity_frames(size, batch, seed=2 * i + 2)}
        for i, batch in enumerate(PARITY_BATCHES)
    ]
    graph = Graph(f"{checkpoint}", PolicyMean(policy), ("image", "goal"), ("action",), cases, {"action": tolerance})
    model, diffs = to_onnx(graph)
    diff = diffs["action"]
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
    return PolicyExport(write_onnx(output, model, metadata), diff, metadata)
