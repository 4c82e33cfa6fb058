"""The world model as one live environment or as a monitor beside a robot: the core of the dreamer.

    wm, run = load_world_model("runs/wm")                   # run folder or .safetensors (runtime: torch | onnx | auto)
    session = DreamSession(wm, ContextPool(wm, run))        # contexts: the run's held-out episodes
    first = session.reset()                                 # DreamFrame: the last real context frame
    frame = session.step(np.zeros(wm.cfg.action_dim))       # DreamFrame: the predicted next frame

One ``step`` is one world-model step, i.e. ``wm.cfg.frame_skip`` control steps (the paper's 4): the
action given is held for all of them, as a simulator repeating it would (ImaginationEnv does the
same with a single action). A policy driving the dreamer thus sees one frame per world-model step.
An episode ends when the done probability exceeds ``done_threshold`` (imagined success) or after
``max_steps`` world-model steps (truncated); the next action then needs a reset.

``wm`` is a WorldModel (runtime torch) or a runtime.inference.runners.WorldModelRunner over the exported
ONNX pieces (runtime onnx, or auto where ``roboscape-r export world_model=`` wrote them): both have
``cfg``, ``encode_context`` and ``step``; everything here reads only those.

Hot reload (``load_replacement``): a new checkpoint is loaded and checked when asked, and refused with
one line (the running model stays) unless it fits the running graph: the same frame size, action
dimension, frame_skip and context length. DreamSession swaps it in at its next episode reset (an
episode never mixes two models); ShadowMonitor at once, with a fresh context (it keeps no state
between predictions beyond the real frames).

ShadowMonitor predicts beside a real robot: from the latest real frames and the actions between
them it predicts the next real frame and scores the prediction against it (MSE, PSNR): a live
out-of-domain signal. side_by_side composes real | dream | goal for RViz. Everything here is
rclpy-free; frames are numpy uint8 [H,W,3], actions float32 [A].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch

from roboscape_r_ros.contract.action_spec import ActionSpec, metaworld_action_spec
from roboscape_r_ros.data.frames import to_model_frame
from roboscape_r_ros.data.reader import open_run_dataset
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.imagination.env import WorldModelRun, check_world_model, context_episodes, resolve_world_model
from roboscape_r_ros.parameters import parameter, threads_parameter
from roboscape_r_ros.perception.metrics import psnr
from roboscape_r_ros.runtime.inference.runners import (
    Runtime,
    WorldModelRunner,
    open_world_model_runner,
    world_model_runtime,
)
from roboscape_r_ros.world_model.model import WorldModel

_SAWYER = metaworld_action_spec()


@dataclass(frozen=True)
class DreamerParams:
    mode: Literal["imagine", "shadow"] = parameter(
        "imagine", "imagine: the world model is the environment; shadow: it predicts beside a real robot"
    )
    world_model: str = parameter(
        "", "world-model run folder (world_model.safetensors + split.json) or a .safetensors checkpoint"
    )
    device: str = parameter("cpu", "inference device of the world model")
    threads: int = threads_parameter()
    runtime: Literal["torch", "onnx", "auto"] = parameter(
        "auto",
        "torch (the checkpoint), onnx (ONNX Runtime over the pieces `roboscape-r export world_model=` wrote into "
        "<run>/onnx, from this very checkpoint) or auto (onnx where those pieces are, else torch)",
    )
    dataset: str = parameter("", "imagine: dataset of the context episodes (empty: the one the run's split.json names)")
    context_episodes: Literal["held_out", "all"] = parameter(
        "held_out", "imagine: context episodes: held_out (the run's split.json) or all"
    )
    context_frames: int = parameter(
        0, "imagine: real context frames per reset (0: the model's context_length - 1)", low=0, high=1024
    )
    max_steps: int = parameter(40, "imagine: world-model steps before an episode is truncated", low=1, high=1_000_000)
    done_threshold: float = parameter(
        0.9, "imagine: an episode ends when the done probability exceeds this", low=0.01, high=1.0
    )
    seed: int = parameter(0, "imagine: seed of the context draws", low=0, high=2**31 - 1)
    auto_reset: bool = parameter(
        True, "imagine: start the next episode as soon as one ends (else refuse actions until reset)"
    )
    republish_period_s: float = parameter(
        0.2,
        "imagine: publish the current frame again (fresh stamp) after this long without an action (s)",
        low=0.01,
        high=3600.0,
    )
    action_names: tuple[str, ...] = parameter(
        _SAWYER.names, "expected Action.names, one per world-model action dimension"
    )
    action_units: tuple[str, ...] = parameter(_SAWYER.units, "expected Action.units")
    action_scale: tuple[float, ...] = parameter(
        _SAWYER.scale, "expected Action.scale (physical quantity per unit of value)"
    )
    frame_id: str = parameter("dream_camera", "frame_id of the published images")
    warning_period_s: float = parameter(
        5.0, "at most one warning per kind of bad input in this period (s)", low=0.0, high=3600.0
    )
    reload_check_s: float = parameter(
        0.0,
        "seconds between checks of the world-model checkpoint file for a replaced model, swapped in at the next "
        "episode reset (0: only on the reload_world_model service)",
        low=0.0,
        high=3600.0,
    )

    def action_spec(self, action_dim: int, checkpoint: Path) -> ActionSpec:
        """The Actions this dreamer takes (values in [-1, 1]); DreamError where the world model takes others."""
        n = len(self.action_names)
        spec = ActionSpec(self.action_names, self.action_units, self.action_scale, (-1.0,) * n, (1.0,) * n)
        if n != action_dim:
            raise DreamError(f"action_names has {n} names, world model {checkpoint} takes {action_dim}-D actions")
        return spec


class DreamError(RoboscapeError, ValueError):
    """A dream that cannot run as asked (no context, wrong action or frame shape); one-line message."""


@overload
def load_world_model(
    path: str | Path, device: str = ..., runtime: Literal["torch"] = ..., threads: int = ...
) -> tuple[WorldModel, WorldModelRun]: ...
@overload
def load_world_model(
    path: str | Path, device: str = ..., runtime: Runtime = ..., threads: int = ...
) -> tuple[WorldModel | WorldModelRunner, WorldModelRun]: ...
def load_world_model(
    path: str | Path, device: str = "cpu", runtime: Runtime = "torch", threads: int = 0
) -> tuple[WorldModel | WorldModelRunner, WorldModelRun]:
    """A run folder or checkpoint file -> (model in eval mode, run); RoboscapeError names the file. Runtime
    onnx (or auto, where the run was exported) gives a WorldModelRunner over the exported pieces instead."""
    run = resolve_world_model(path)
    if world_model_runtime(run.checkpoint, runtime) == "onnx":
        return open_world_model_runner(run.checkpoint, "onnx", device, threads), run
    return WorldModel.from_checkpoint(run.checkpoint, device=device), run


def describe(wm: WorldModel | WorldModelRunner) -> str:
    """What runs the world model, e.g. 'onnx on CPUExecutionProvider'."""
    return wm.describe() if isinstance(wm, WorldModelRunner) else f"torch on torch:{wm.device}"


def as_numpy(x) -> np.ndarray:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else x


REFUSED = "reload refused, the old world model keeps running"
FITS = ("image_size", "action_dim", "frame_skip", "context_length")  # what a replacement must share


def load_replacement(running, path: str | Path, device: str = "cpu", runtime: Runtime = "torch", threads: int = 0):
    """(world model, run) at ``path`` if it can replace ``running`` in a live graph, else DreamError (one line)."""
    try:
        wm, run = load_world_model(path, device, runtime, threads)
    except RoboscapeError as err:
        raise DreamError(f"{REFUSED}: {err}") from None
    differ = [f"{k} {getattr(wm.cfg, k)} (running: {getattr(running.cfg, k)})" for k in FITS
              if getattr(wm.cfg, k) != getattr(running.cfg, k)]  # fmt: skip
    if differ:
        raise DreamError(f"{REFUSED}: {run.checkpoint} has {', '.join(differ)}")
    return wm, run


def check_action(wm: WorldModel | WorldModelRunner, action: np.ndarray) -> np.ndarray:
    """float32 [A] of finite values in [-1, 1] (the range the world model was trained on), or DreamError."""
    action = np.asarray(action, np.float32)
    if action.shape != (wm.cfg.action_dim,):
        raise DreamError(f"the world model takes {wm.cfg.action_dim}-D actions, got shape {list(action.shape)}")
    if not np.isfinite(action).all():
        raise DreamError(f"action {action.tolist()} holds NaN or inf")
    if np.abs(action).max(initial=0.0) > 1.0:
        raise DreamError(f"action {action.tolist()} leaves [-1, 1]")
    return action


def check_frame(wm: WorldModel | WorldModelRunner, frame: np.ndarray, what: str = "frame") -> np.ndarray:
    """uint8 [S,S,3] at the world model's size S (writable, as torch wants it), or DreamError."""
    size = wm.cfg.image_size
    if frame.dtype != np.uint8 or frame.shape != (size, size, 3):
        raise DreamError(f"{what} is {frame.dtype} {list(frame.shape)}; the world model takes uint8 [{size},{size},3]")
    return frame if frame.flags.writeable else frame.copy()


@dataclass(frozen=True)
class Context:
    frames: np.ndarray  # uint8 [C,H,W,3] real frames, frame_skip control steps apart
    actions: np.ndarray  # float32 [C-1,A] mean control action between consecutive frames
    label: str  # where it comes from, e.g. "dataset episode 7" or "latest real frames"
    instruction: str = ""


class ContextPool:
    """Real context windows: the first ``context_frames`` frames (frame_skip apart) of dataset episodes,
    by default the run's held-out ones (split.json), drawn at random per reset."""

    def __init__(
        self,
        wm: WorldModel | WorldModelRunner,
        run: WorldModelRun,
        *,
        dataset: str = "",
        episodes: str = "held_out",
        context_frames: int = 0,
        seed: int = 0,
    ):
        path = dataset or (run.split or {}).get("dataset", "")
        if not path:
            raise DreamError(f"{run.checkpoint}: no dataset given and no split.json beside it names one")
        data = open_run_dataset(path, run.split)
        check_world_model(wm, data, f"world model {run.checkpoint}")
        capacity = wm.cfg.context_length - 1
        self.context_frames = context_frames or capacity
        if not 1 <= self.context_frames <= capacity:
            raise DreamError(f"context_frames={context_frames}: the world model holds 1..{capacity} context frames")
        self.frame_skip = wm.cfg.frame_skip
        span = (self.context_frames - 1) * self.frame_skip + 1  # recorded frames a window covers
        arrays = data.load_arrays()
        pool = [e for e in context_episodes(run, data, episodes) if arrays.lengths[e] >= span]
        if not pool:
            raise DreamError(f"{data.root}: no context episode holds {span} frames; lower context_frames")
        self.episodes = np.asarray(pool, np.int64)
        rows = [np.arange(arrays.starts[e], arrays.starts[e] + span) for e in pool]  # [P][span]
        self.frames = np.stack([arrays.frames[r[:: self.frame_skip]] for r in rows])  # uint8 [P,C,H,W,3]
        steps = np.stack([arrays.actions[r[:-1]] for r in rows])  # [P,(C-1)k,A]
        self.actions = steps.reshape(len(pool), self.context_frames - 1, self.frame_skip, -1).mean(2)  # [P,C-1,A]
        self.instructions = [data.episodes[e].instruction for e in pool]
        self.rng = np.random.default_rng(seed)

    def draw(self) -> Context:
        p = int(self.rng.integers(len(self.episodes)))
        return Context(
            self.frames[p],
            self.actions[p].astype(np.float32),
            f"dataset episode {self.episodes[p]}",
            self.instructions[p],
        )


@dataclass(frozen=True)
class DreamFrame:
    image: np.ndarray  # uint8 [H,W,3]: the last real context frame after a reset, else the predicted frame
    done_probability: float  # of this frame (0 after a reset: the context's own is not the model's guess)
    terminated: bool  # the done head fired (done_probability > done_threshold): imagined success
    truncated: bool  # max_steps world-model steps reached without it
    step: int  # world-model steps taken in this episode
    episode_id: str
    context: Context

    @property
    def ended(self) -> bool:
        return self.terminated or self.truncated


class DreamSession:
    """The KV-cache state of ONE imagined environment, stepped one action at a time."""

    def __init__(
        self,
        wm: WorldModel | WorldModelRunner,
        contexts: ContextPool | None = None,
        *,
        max_steps: int = 40,
        done_threshold: float = 0.9,
        name: str = "dream",
    ):
        if max_steps < 1 or not 0.0 < done_threshold <= 1.0:
            raise DreamError(f"max_steps must be >= 1 and done_threshold in (0, 1]; got {max_steps}, {done_threshold}")
        self.wm, self.contexts = wm, contexts
        self.max_steps, self.done_threshold, self.name = max_steps, done_threshold, name
        self.episode_index = -1
        # What wm.encode_context returned: a State under torch, a WorldModelRunner's opaque state under onnx.
        self.state: Any = None
        self.frame: DreamFrame | None = None
        # a hot-reloaded model (load_replacement), taken at the next reset
        self.pending: WorldModel | WorldModelRunner | None = None

    @property
    def frame_skip(self) -> int:
        return self.wm.cfg.frame_skip

    @property
    def current(self) -> DreamFrame:
        """The frame of the running episode; DreamError before the first reset."""
        if self.frame is None:
            raise DreamError("no episode yet: reset first")
        return self.frame

    def reset(self, context: Context | None = None) -> DreamFrame:
        """Start an episode from ``context`` (else one drawn from the pool); returns its last real frame."""
        if context is None:
            if self.contexts is None:
                raise DreamError("no context given and no context pool (dataset) to draw one from")
            context = self.contexts.draw()
        if self.pending is not None:
            self.wm, self.pending = self.pending, None
        for i, frame in enumerate(context.frames):
            check_frame(self.wm, frame, f"context frame {i}")
        if context.actions.shape != (len(context.frames) - 1, self.wm.cfg.action_dim):
            raise DreamError(
                f"{len(context.frames)} context frames need actions [{len(context.frames) - 1},"
                f"{self.wm.cfg.action_dim}], got {list(context.actions.shape)}"
            )
        self.state = self.wm.encode_context(context.frames[None], context.actions[None])
        self.episode_index += 1
        self.frame = DreamFrame(
            context.frames[-1], 0.0, False, False, 0, f"{self.name}-ep{self.episode_index:04d}", context
        )
        return self.frame

    def step(self, action: np.ndarray) -> DreamFrame:
        """Hold ``action`` float32 [A] for one world-model step (frame_skip control steps)."""
        if self.frame is None or self.frame.ended:
            raise DreamError("the episode has ended: reset first")
        action = check_action(self.wm, action)
        self.state, image, done = self.wm.step(self.state, action[None])
        p, step = float(done[0]), self.frame.step + 1
        terminated = p > self.done_threshold
        self.frame = DreamFrame(
            as_numpy(image[0]),
            p,
            terminated,
            not terminated and step >= self.max_steps,
            step,
            self.frame.episode_id,
            self.frame.context,
        )
        return self.frame


@dataclass(frozen=True)
class ShadowResult:
    prediction: np.ndarray  # uint8 [H,W,3]: what the model expected this real frame to be
    real: np.ndarray  # uint8 [H,W,3]: the real frame
    mse: float  # per-pixel mean squared error, intensities in [0, 1]
    psnr_db: float  # peak signal-to-noise ratio (inf when identical)


class ShadowMonitor:
    """Predicts each next real frame from the latest real ones and the actions taken, and scores it.

    ``observe(stamp, frame)`` a real frame, ``act(stamp, action)`` the action answering the frame of
    that stamp (as msg/Action's header carries it). Every frame_skip actions make one world-model step
    (their mean): the prediction of the frame that follows, scored when it arrives. Context: up to
    context_length - 1 real frames one world-model step apart, linked by the actions between them. A
    frame that follows one nobody answered breaks the chain: the context restarts from it.
    """

    def __init__(self, wm: WorldModel | WorldModelRunner):
        self.replace(wm)

    def replace(self, wm: WorldModel | WorldModelRunner) -> None:
        """Predict with ``wm`` from now on (a hot reload: load_replacement checked it), from a fresh context."""
        self.wm = wm
        self.reset()

    def reset(self) -> None:
        """Forget the context (a new episode, or a jump in the real stream)."""
        self.frames: list[np.ndarray] = []  # kept real frames uint8 [H,W,3], one world-model step apart
        self.actions: list[np.ndarray] = []  # float32 [A] mean action between consecutive kept frames
        self.pending: list[np.ndarray] = []  # control actions since the last kept frame
        self.prediction: np.ndarray | None = None  # uint8 [H,W,3] of the next kept frame
        self.latest: int | None = None  # stamp of the latest real frame
        self.answered = False  # an action answered the latest frame

    @property
    def frame_skip(self) -> int:
        return self.wm.cfg.frame_skip

    def observe(self, stamp: int, frame: np.ndarray) -> ShadowResult | None:
        """A real frame: scored against the prediction waiting for it (the result), kept as context."""
        frame = check_frame(self.wm, frame, "observation")
        result = None
        if stamp == self.latest:
            return None  # the same frame again (a republish)
        if not (self.frames and self.answered):
            self.reset()
            self.frames = [frame]
        elif self.prediction is not None:
            mse = float(((self.prediction / 255.0 - frame / 255.0) ** 2).mean())
            result = ShadowResult(self.prediction, frame, mse, float(psnr(self.prediction, frame)))
            keep = self.wm.cfg.context_length - 1
            self.frames = (self.frames + [frame])[-keep:]
            self.actions = (self.actions + [np.mean(self.pending, 0)])[len(self.actions) + 2 - len(self.frames) :]
            self.pending, self.prediction = [], None
        self.latest, self.answered = stamp, False
        return result

    def act(self, stamp: int, action: np.ndarray) -> np.ndarray | None:
        """The action answering the frame stamped ``stamp``; returns the predicted next frame when a
        world-model step is complete (else None: a repeat, a late answer, or a step still filling)."""
        action = check_action(self.wm, action)
        if stamp != self.latest or self.answered or not self.frames:
            return None
        self.answered = True
        self.pending.append(action)
        if len(self.pending) < self.frame_skip:
            return None
        actions = np.zeros((0, self.wm.cfg.action_dim), np.float32) if not self.actions else np.stack(self.actions)
        state = self.wm.encode_context(np.stack(self.frames)[None], actions[None])  # [1,C,H,W,3], [1,C-1,A]
        _, image, _ = self.wm.step(state, np.stack(self.pending).mean(0, dtype=np.float32)[None])
        self.prediction = as_numpy(image[0])
        return self.prediction


def side_by_side(size: int, real: np.ndarray | None, dream: np.ndarray | None, goal: np.ndarray | None) -> np.ndarray:
    """real | dream | goal as one uint8 [size, 3*size+4, 3] image; a missing panel is black, 2-px grey gaps."""
    gap = np.full((size, 2, 3), 128, np.uint8)
    panels = []
    for panel in (real, dream, goal):
        panels.append(np.zeros((size, size, 3), np.uint8) if panel is None else to_model_frame(panel, size))
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], 1)
