"""Goal frames for episodes in the physics sim: what the scene should look like when the task is done.

    ExpertGoal  (default) the scripted expert is rolled out from the same reset seed, physics only,
                and the frame ``hold_steps`` control steps after its first success is rendered: the
                goal of *this* episode (its goal marker, object and scene variation), like the goal
                an imagination episode gets from a held-out demo or from the goal model. The same
                rollout tells whether the expert can solve the episode at all (evaluation drops
                episodes it cannot).
    DemoGoal    the last frame of a successful episode of the same task in a dataset, picked at random
                by (its seed, the reset seed): cheap, but it shows another episode's goal position.

A goal source is called as ``source(env, seed) -> Goal``; it may reset and step ``env``, so the caller
resets with ``seed`` afterwards (resets are deterministic in the seed).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.envs.metaworld_env import PixelMetaWorldEnv
from roboscape_r_ros.envs.tasks import expert_policy
from roboscape_r_ros.errors import RoboscapeError

# collect (steps_after_success=5) records 4 frames after the first success frame; BC's goals are those
DEFAULT_HOLD_STEPS = 4


class GoalError(RoboscapeError, ValueError):
    """No goal frame can be made for a task (no successful demo, wrong frame size)."""


@dataclass(frozen=True)
class Goal:
    image: np.ndarray  # uint8 [H,W,3]
    expert_success: bool | None = None  # did the scripted expert solve this episode (None: not tried)
    expert_steps: int = 0  # control steps the expert ran


class GoalSource(Protocol):
    def __call__(self, env: PixelMetaWorldEnv, seed: int) -> Goal: ...


def expert_actions_quietly(expert, metaworld_obs: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        # the experts' proportional gains overshoot [-1, 1] by design: clipped here
        warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
        return np.clip(expert.get_action(metaworld_obs), -1.0, 1.0).astype(np.float32)


class ExpertGoal:
    def __init__(self, hold_steps: int = DEFAULT_HOLD_STEPS):
        self.hold_steps = hold_steps

    def __call__(self, env: PixelMetaWorldEnv, seed: int) -> Goal:
        _, info = env.reset(seed=seed)
        expert = expert_policy(env.task)
        metaworld_obs = info["metaworld_obs"]
        first_success: int | None = None
        steps = 0
        while steps < env.cfg.max_steps:
            # the simulator alone: no frame is rendered until the last one
            metaworld_obs, _, _, _, sim_info = env.sim.step(expert_actions_quietly(expert, metaworld_obs))
            steps += 1
            if sim_info["success"] and first_success is None:
                first_success = steps
            if first_success is not None and steps - first_success >= self.hold_steps:
                break
        return Goal(env.render(), first_success is not None, steps)


class DemoGoal:
    def __init__(self, dataset: EpisodeDataset | str | Path, seed: int = 0):
        if not isinstance(dataset, EpisodeDataset):
            dataset = EpisodeDataset.open(dataset)
        self.root, self.image_shape = dataset.root, dataset.image_shape
        arrays = dataset.load_arrays()
        last_rows = arrays.starts + arrays.lengths - 1  # [E]
        self.last_frames: dict[str, list[np.ndarray]] = {}
        for meta, row in zip(dataset.episodes, last_rows):
            if meta.success:
                self.last_frames.setdefault(meta.task, []).append(arrays.frames[row])
        self.seed = seed

    def __call__(self, env: PixelMetaWorldEnv, seed: int) -> Goal:
        frames = self.last_frames.get(env.task)
        if not frames:
            raise GoalError(f"{self.root}: no successful episode of {env.task} to take a goal frame from")
        shape = (env.cfg.resolution, env.cfg.resolution, 3)  # its observation_space["image"]
        if tuple(shape) != tuple(self.image_shape):
            raise GoalError(f"{self.root}: frames are {list(self.image_shape)}, the env renders {list(shape)}")
        return Goal(frames[np.random.default_rng((self.seed, seed)).integers(len(frames))])
