"""One inference interface for a policy's deterministic action, in torch or in ONNX Runtime.

    runner = open_policy_runner("policy.onnx", runtime="auto", device="cpu")
    action = runner.mean(image, goal)        # uint8 [B,H,W,3] x 2 -> float32 [B,K,A]
    runner.providers                         # what really runs it, e.g. ['CPUExecutionProvider']

``runtime``: ``torch`` runs a .safetensors checkpoint, ``onnx`` a file from ``roboscape-r export``,
``auto`` picks by the file's suffix. ONNX Runtime providers: on a ``cuda`` device TensorRT and CUDA
(where the installed onnxruntime build has them), then CPU; the providers reported are those the
session actually uses (``get_providers()``), never the requested ones: a GPU build without a usable
GPU silently falls back to the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.export.policy import ONNX_FORMAT
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyCheckpointError, PolicyConfig, config_from_metadata, obs_batch

Runtime = Literal["torch", "onnx", "auto"]


class PolicyRunner:
    """A policy's mean action; ``cfg`` is the policy's config (sizes)."""

    runtime: str
    cfg: PolicyConfig
    providers: list[str]

    def mean(self, image: np.ndarray, goal: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.runtime} on {', '.join(self.providers)}"


def torch_device(name: str) -> torch.device:
    """``name`` as a torch device that this torch build can use, or a one-line error."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise RoboscapeError(f"device '{name}' is not a torch device ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RoboscapeError(f"device '{name}' asked for, but torch sees no CUDA device")
    return device


class TorchPolicyRunner(PolicyRunner):
    runtime = "torch"

    def __init__(self, path: Path, device: str, action_dim: int | None, threads: int):
        self.policy = ImagePolicy.load(path, action_dim=action_dim, device=torch_device(device)).eval()
        self.cfg = self.policy.cfg
        self.providers = [f"torch:{self.policy.device}"]

    def mean(self, image: np.ndarray, goal: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.policy.mean(obs_batch(image, goal, self.policy.device)).cpu().numpy()


def onnx_providers(device: str, available: list[str]) -> list[str]:
    """Providers to ask for, best first: accelerators only on a cuda device and only where the build has them."""
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if device.startswith("cuda") else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


class OnnxPolicyRunner(PolicyRunner):
    runtime = "onnx"

    def __init__(self, path: Path, device: str, action_dim: int | None, threads: int):
        import onnxruntime as ort

        if not path.is_file():
            raise PolicyCheckpointError(f"{path}: no such ONNX policy file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=onnx_providers(device, ort.get_available_providers())
            )
        except Exception as err:  # ONNX Runtime raises its own exception types for unreadable models
            raise PolicyCheckpointError(
                f"{path}: not a readable ONNX model ({str(err).splitlines()[0][:160]})"
            ) from None
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        self.cfg = config_from_metadata(
            path, self.metadata, ONNX_FORMAT, "policy exported by roboscape-r export", action_dim
        )
        self.providers = self.session.get_providers()
        if device.startswith("cuda") and self.providers == ["CPUExecutionProvider"]:
            raise PolicyCheckpointError(
                f"device {device} asked for, but this onnxruntime build runs {path.name} on the CPU only "
                "(install the gpu choice: see README, ONNX Runtime)"
            )

    def mean(self, image: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return self.session.run(["action"], {"image": np.ascontiguousarray(image), "goal": np.ascontiguousarray(goal)})[
            0
        ]


def open_policy_runner(
    path: str | Path, runtime: Runtime = "auto", device: str = "cpu", action_dim: int | None = None, threads: int = 0
) -> PolicyRunner:
    """``threads``: ONNX Runtime's intra-op threads (0: its default); torch uses the process's setting."""
    path = Path(path)
    is_onnx = path.suffix == ".onnx"
    if runtime == "auto":
        runtime = "onnx" if is_onnx else "torch"
    if runtime == "onnx" and not is_onnx:
        raise RoboscapeError(
            f"{path}: runtime onnx runs an exported .onnx file; export this checkpoint first "
            f"(roboscape-r export policy={path})"
        )
    if runtime == "torch" and is_onnx:
        raise RoboscapeError(f"{path}: an ONNX file runs under runtime onnx (or auto), not torch")
    return (OnnxPolicyRunner if runtime == "onnx" else TorchPolicyRunner)(path, device, action_dim, threads)
