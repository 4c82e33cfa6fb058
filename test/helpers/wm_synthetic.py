"""A tiny synthetic dataset for train-wm / evaluate-wm tests, written with the real DatasetWriter.

32x32 frames: a red square moved by the action (dx, dy: 2 px per step in each direction whose
component exceeds 1/3) towards a blue marker whose place depends on the task. Episode kinds as
`collect` records them: expert (small action noise, succeeds), noisy (strong noise), failed (the
expert aims at the wrong place: never succeeds, runs to the step cap) and random (uniform actions).
Success = the square covers the marker; 2 frames are kept after it. Done labels are the paper's.

train-wm runs on it: the tests' arguments (``train_wm_args``), the step a stage saved (``saved_step``)
and a run killed as soon as a stage saved a given step (``kill_once_saved``); without training, ``tiny_run``:
a run folder of a random-weight tiny world model beside a small dataset of it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from helpers.toy_world import write_run
from roboscape_r_ros.config import load_config
from roboscape_r_ros.data.done_labels import done_labels
from roboscape_r_ros.data.lerobot import DatasetWriter, Episode
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.world_model import WorldModel, WorldModelConfig
from roboscape_r_ros.world_model.checkpoint import load_tensors

SIZE, SQUARE, STEP, MAX_LEN = 32, 8, 2, 28
TASKS = {
    "reach-v3": ("Reach the blue marker.", np.array([20, 6])),
    "push-v3": ("Push the square onto the blue marker.", np.array([6, 20])),
}
NOISE = {"expert": 0.1, "noisy": 0.5, "failed": 0.1, "random": None}
HELD_OUT = [6, 7]  # tiny_run's held-out episodes


def render(pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
    frame = np.full((SIZE, SIZE, 3), 40, np.uint8)
    frame[goal[1] - 2 : goal[1] + SQUARE + 2, goal[0] - 2 : goal[0] + SQUARE + 2] = (40, 90, 230)
    frame[pos[1] : pos[1] + SQUARE, pos[0] : pos[0] + SQUARE] = (230, 50, 40)
    return frame


def episode(task: str, kind: str, rng: np.random.Generator, max_len: int = MAX_LEN) -> Episode:
    instruction, goal = TASKS[task]
    cells = np.arange(0, SIZE - SQUARE + 1, STEP)
    pos = rng.choice(cells, 2)
    while np.abs(pos - goal).sum() < 12:
        pos = rng.choice(cells, 2)
    target = goal if kind != "failed" else np.clip(goal + np.array([10, -10]) * rng.choice([-1, 1], 2), 0, 24)
    frames, actions, success_at = [render(pos, goal)], [], None
    while len(frames) < max_len:
        if NOISE[kind] is None:
            action = rng.uniform(-1, 1, 2)
        else:
            axis = 0 if pos[0] != target[0] else 1
            action = 0.8 * np.sign(target - pos) * (np.arange(2) == axis) + rng.normal(0, NOISE[kind], 2)
        action = np.clip(action, -1, 1)
        pos = np.clip(pos + STEP * np.sign(action) * (np.abs(action) > 1 / 3), 0, SIZE - SQUARE).astype(int)
        frames.append(render(pos, goal))
        actions.append(action)
        if success_at is None and (pos == goal).all():
            success_at = len(frames) - 1
        if success_at is not None and len(frames) - 1 - success_at >= 2:
            break
    actions.append(np.zeros(2))
    n = len(frames)
    done, subtask = done_labels(n, [success_at] if success_at is not None else [])
    full_actions = np.zeros((n, 4), np.float32)
    full_actions[:, :2] = np.stack(actions)
    return Episode(
        frames=np.stack(frames),
        actions=full_actions,
        states=np.zeros((n, 4), np.float32),
        done=done,
        subtask_index=subtask,
        task=task,
        instruction=instruction,
        success=success_at is not None,
        kind=kind,
    )


def write_dataset(root: Path, per_kind: int = 3, seed: int = 0, scale: int = 1, max_len: int = MAX_LEN) -> Path:
    """`per_kind` episodes of each kind and task; frames upscaled `scale` times (nearest neighbour), failed and
    random episodes `max_len` frames long."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(
        root,
        fps=80,
        camera="corner2",
        image_shape=(SIZE * scale, SIZE * scale, 3),
        action_names=["dx", "dy", "dz", "gripper"],
        state_names=["hand_x", "hand_y", "hand_z", "gripper_opening"],
    ) as writer:
        for task in TASKS:
            for kind in NOISE:
                for _ in range(per_kind):
                    ep = episode(task, kind, rng, max_len)
                    if scale > 1:
                        ep.frames = ep.frames.repeat(scale, axis=1).repeat(scale, axis=2)
                    writer.add_episode(ep)
    return root


def tiny_run(folder: Path, *overrides: str) -> Path:
    """A train-wm run folder: a random tiny world model + split.json over a small synthetic dataset."""
    data = EpisodeDataset.open(write_dataset(folder / "data", per_kind=1))
    torch.manual_seed(0)
    cfg = load_config(
        WorldModelConfig, "world_model", "tiny", ["image_size=32", "action_dim=4", "context_length=3", *overrides]
    )
    return write_run(folder / "run", WorldModel(cfg), data, HELD_OUT)


def train_wm_args(dataset: Path, run: Path, steps: dict[str, int], *extra: str) -> list[str]:
    """`roboscape-r train-wm` arguments of the tests: the tiny preset, one thread, no progress bars, 30%
    held out, ``steps`` per stage (tokenizer, action, goal), then ``extra`` overrides."""
    return [
        "train-wm",
        "--preset",
        "tiny",
        f"dataset={dataset}",
        f"run={run}",
        "threads=1",
        "progress=false",
        "held_out_fraction=0.3",
        *(f"model.train.{stage}_steps={n}" for stage, n in steps.items()),
        *extra,
    ]


def saved_step(run: Path, stage: str) -> int:
    """The step of ``stage`` (tokenizer, action, goal) that ``run`` last saved (optim-<stage>.safetensors)."""
    return int(load_tensors(run / f"optim-{stage}.safetensors", ("step",))[1]["step"])


def kill_once_saved(
    proc: subprocess.Popen, run: Path, stage: str, step: int, kill: Callable[[int], None], timeout_s: float = 120
) -> int | None:
    """``kill(proc.pid)`` as soon as train-wm ``proc`` has saved ``stage`` at ``step`` or later in ``run``: the
    step saved when it was killed, or None when the process ended (or ``timeout_s`` passed) first."""
    optim = run / f"optim-{stage}.safetensors"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if optim.exists() and saved_step(run, stage) >= step:
            kill(proc.pid)
            return saved_step(run, stage)
        time.sleep(0.02)
    return None
