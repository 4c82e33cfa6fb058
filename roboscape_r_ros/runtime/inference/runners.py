"""One inference interface, in torch or in ONNX Runtime, for a policy's deterministic action and for the
world model's imagination steps (what the dreamer runs).

    runner = open_policy_runner("policy.onnx", runtime="auto", device="cpu")
    action = runner.mean(image, goal)        # uint8 [B,H,W,3] x 2 -> float32 [B,K,A]
    runner.providers                         # what really runs it, e.g. ['CPUExecutionProvider']

    dreams = open_world_model_runner("run/world_model.safetensors", runtime="auto")
    state = dreams.encode_context(frames, actions)          # uint8 [B,T,H,W,3], float32 [B,T-1,A]
    state, frames, done = dreams.step(state, action)        # float32 [B,A] -> uint8 [B,H,W,3], float32 [B]

Policies: ``runtime`` ``torch`` runs a .safetensors checkpoint, ``onnx`` a file from ``roboscape-r export``,
``auto`` picks by the file's suffix. World models: ``torch`` runs the checkpoint, ``onnx`` the pieces
``roboscape-r export world_model=<run>`` wrote into ``onnx/`` beside it (they must come from this very
checkpoint: its SHA-256 is in their metadata), ``auto`` the pieces when they are there.

ONNX Runtime providers: on a ``cuda`` device TensorRT and CUDA (where the installed onnxruntime build
has them), then CPU; the providers reported are those the session actually uses (``get_providers()``),
never the requested ones: a GPU build without a usable GPU silently falls back to the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from roboscape_r_ros.config import ConfigError, from_dict
from roboscape_r_ros.devices import torch_device
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.export.graph import sha256
from roboscape_r_ros.export.policy import ONNX_FORMAT
from roboscape_r_ros.export.world_model import ONNX_FOLDER, PIECES, WM_ONNX_FORMAT
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyCheckpointError, PolicyConfig, config_from_metadata, obs_batch
from roboscape_r_ros.world_model.checkpoint import CheckpointError
from roboscape_r_ros.world_model.config import WorldModelConfig
from roboscape_r_ros.world_model.model import WorldModel
from roboscape_r_ros.world_model.tokenizer import hold_static_tokens

Runtime = Literal["torch", "onnx", "auto"]


class Runner:
    runtime: str
    providers: list[str]

    def describe(self) -> str:
        return f"{self.runtime} on {', '.join(self.providers)}"


class PolicyRunner(Runner):
    """A policy's mean action; ``cfg`` is the policy's config (sizes)."""

    cfg: PolicyConfig

    def mean(self, image: np.ndarray, goal: np.ndarray) -> np.ndarray:
        raise NotImplementedError


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


def onnx_session(path: Path, device: str, threads: int, error: type[RoboscapeError], what: str):
    """An ONNX Runtime session of the file at ``path`` on ``device``'s providers, or ``error`` (one line)."""
    import onnxruntime as ort

    if not path.is_file():
        raise error(f"{path}: no such {what}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(
            str(path), options, providers=onnx_providers(device, ort.get_available_providers())
        )
    except Exception as err:  # ONNX Runtime raises its own exception types for unreadable models
        raise error(f"{path}: not a readable ONNX model ({str(err).splitlines()[0][:160]})") from None
    if device.startswith("cuda") and session.get_providers() == ["CPUExecutionProvider"]:
        raise error(
            f"device {device} asked for, but this onnxruntime build runs {path.name} on the CPU only "
            "(install the gpu choice: see README, ONNX Runtime)"
        )
    return session


class OnnxPolicyRunner(PolicyRunner):
    runtime = "onnx"

    def __init__(self, path: Path, device: str, action_dim: int | None, threads: int):
        self.session = onnx_session(path, device, threads, PolicyCheckpointError, "ONNX policy file")
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        self.cfg = config_from_metadata(
            path, self.metadata, ONNX_FORMAT, "policy exported by roboscape-r export", action_dim
        )
        self.providers = self.session.get_providers()

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


class WorldModelRunner(Runner):
    """WorldModel's imagination API on numpy: ``cfg`` is the world model's config. A state is opaque."""

    cfg: WorldModelConfig

    def encode_context(self, frames: np.ndarray, actions: np.ndarray):
        """Real frames uint8 [B,T,H,W,3] and the actions between them float32 [B,T-1,A] -> a state of the last
        context_length - 1 of them."""
        raise NotImplementedError

    def step(self, state, actions: np.ndarray) -> tuple[object, np.ndarray, np.ndarray]:
        """Actions float32 [B,A] -> (new state, predicted frames uint8 [B,H,W,3], done probability float32 [B])."""
        raise NotImplementedError


class TorchWorldModelRunner(WorldModelRunner):
    runtime = "torch"

    def __init__(self, checkpoint: Path, device: str, threads: int):
        self.wm = WorldModel.from_checkpoint(checkpoint, device=torch_device(device))
        self.cfg = self.wm.cfg
        self.providers = [f"torch:{self.wm.device}"]

    def encode_context(self, frames, actions):
        return self.wm.encode_context(frames, actions)

    def step(self, state, actions):
        state, frames, done = self.wm.step(state, actions)
        return state, frames.cpu().numpy(), done.float().cpu().numpy()


class OnnxWorldModelRunner(WorldModelRunner):
    """The pieces of ``roboscape-r export world_model=`` (encode, context, step, decode) in one folder."""

    runtime = "onnx"

    def __init__(self, folder: Path, device: str, threads: int, checkpoint: Path | None = None):
        what = f"world-model piece (export it: roboscape-r export world_model={checkpoint or folder})"
        self.sessions = {
            piece: onnx_session(folder / f"{piece}.onnx", device, threads, CheckpointError, what) for piece in PIECES
        }
        metadata = {piece: s.get_modelmeta().custom_metadata_map for piece, s in self.sessions.items()}
        for piece, meta in metadata.items():
            if (meta.get("format"), meta.get("piece")) != (WM_ONNX_FORMAT, piece):
                raise CheckpointError(
                    f"{folder / piece}.onnx: not a world-model {piece} exported by roboscape-r export"
                )
        sources = {meta.get("source_sha256") for meta in metadata.values()}
        if len(sources) != 1:
            raise CheckpointError(f"{folder}: its pieces come from different checkpoints (re-export the run)")
        if checkpoint is not None and sources != {sha256(checkpoint)}:
            raise CheckpointError(
                f"{folder}: exported from another checkpoint than {checkpoint} (re-export: roboscape-r export "
                f"world_model={checkpoint})"
            )
        try:
            self.cfg = from_dict(WorldModelConfig, json.loads(metadata["step"]["config"]))
        except (KeyError, json.JSONDecodeError, ConfigError) as err:
            raise CheckpointError(f"{folder / 'step.onnx'}: unusable world-model config ({err})") from None
        self.grid, self.capacity = self.cfg.image_size // 8, self.cfg.context_length - 1
        self.providers = self.sessions["step"].get_providers()

    def run(self, piece: str, **inputs: np.ndarray) -> list[np.ndarray]:
        return self.sessions[piece].run(None, {k: np.ascontiguousarray(v) for k, v in inputs.items()})

    def encode_context(self, frames, actions):
        frames, actions = np.asarray(frames, np.uint8), np.asarray(actions, np.float32)
        if actions.shape[1] != frames.shape[1] - 1:
            raise ValueError(
                f"{frames.shape[1]} context frames need {frames.shape[1] - 1} actions, got {actions.shape[1]}"
            )
        keep = min(frames.shape[1], self.capacity)
        frames = frames[:, -keep:]
        ids = self.run("encode", frames=frames.reshape(-1, *frames.shape[2:]))[0].reshape(*frames.shape[:2], -1)
        held = hold_static_tokens(
            torch.from_numpy(ids).unflatten(-1, (self.grid, self.grid)),
            torch.from_numpy(frames),
            self.cfg.token_hold_threshold,
        )
        kv, valid, _ = self.run(
            "context", tokens=held.flatten(-2).numpy(), actions=actions[:, actions.shape[1] - keep + 1 :]
        )
        return kv, valid

    def step(self, state, actions):
        kv, valid, tokens, done = self.run("step", kv=state[0], valid=state[1], action=np.asarray(actions, np.float32))
        return (kv, valid), self.run("decode", tokens=tokens)[0], done


def world_model_runtime(checkpoint: Path, runtime: Runtime) -> str:
    """torch or onnx: auto is onnx where the checkpoint's run was exported (``onnx/`` beside it)."""
    if runtime == "auto":
        return "onnx" if (checkpoint.parent / ONNX_FOLDER / "step.onnx").is_file() else "torch"
    return runtime


def open_world_model_runner(
    checkpoint: str | Path, runtime: Runtime = "auto", device: str = "cpu", threads: int = 0
) -> WorldModelRunner:
    """The world model of ``checkpoint`` (.safetensors) in torch, or its exported pieces in ``onnx/`` beside it."""
    checkpoint = Path(checkpoint)
    if world_model_runtime(checkpoint, runtime) == "onnx":
        return OnnxWorldModelRunner(checkpoint.parent / ONNX_FOLDER, device, threads, checkpoint)
    return TorchWorldModelRunner(checkpoint, device, threads)
