"""Episodes from Meta-World's scripted experts, labelled for the world model and written as a dataset.

Every task gets ``episodes_per_task`` episodes of four kinds, in fixed shares:
    expert  the scripted expert as is
    noisy   the expert plus Gaussian action noise (it mostly still succeeds)
    failed  the expert aiming beside the object and the goal (it mostly misses)
    random  uniform random actions
The kind says how an episode was made; ``success`` and the done labels say what happened (Meta-World's
success flag), so a failed-kind episode that succeeds anyway is recorded as a success.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.data.done_labels import done_labels
from roboscape_r_ros.data.lerobot import KINDS, Episode
from roboscape_r_ros.envs.metaworld_env import ACTION_NAMES, CONTROL_HZ, EnvConfig, PixelMetaWorldEnv
from roboscape_r_ros.envs.scene import SceneDraws
from roboscape_r_ros.envs.tasks import expert_policy

Actor = Callable[[np.ndarray], np.ndarray]  # 39-d Meta-World observation -> action [4]
ACTOR_STREAM = 1  # an actor seeded (seed, 1) draws apart from the env reset with the same seed
SCENE_STREAM = 2  # and the episode's scene (seed, 2) apart from both


@dataclass
class CollectConfig:
    env: EnvConfig = option(EnvConfig(), help="environment: tasks, resolution, camera, step cap, scene")
    scene_draws: SceneDraws = option(
        SceneDraws(), help="a random scene per episode on top of env.scene (colours, light); off by default"
    )
    episodes_per_task: int = option(20, help="episodes recorded per task, all kinds together", low=1)
    noisy_fraction: float = option(
        0.3, help="share of 'noisy' episodes: expert plus Gaussian action noise", low=0.0, high=1.0
    )
    expert_action_noise: float = option(
        0.1, help="std of the Gaussian noise on each action of a 'noisy' episode", low=0.0
    )
    failed_fraction: float = option(
        0.2, help="share of 'failed' episodes: the expert aims beside the object and goal", low=0.0, high=1.0
    )
    failed_target_offset: float = option(
        0.15, help="metres (horizontal) a 'failed' expert aims beside its targets", low=0.0
    )
    random_fraction: float = option(0.1, help="share of 'random' episodes: uniform random actions", low=0.0, high=1.0)
    action_hold_steps: int = option(
        1,
        help="control steps each random action ('random' episodes) and each noise draw ('noisy' episodes) is "
        "held; set it to the world model's frame_skip so the actions a world-model step averages do not cancel out",
        low=1,
    )
    steps_after_success: int = option(
        5, help="control steps recorded after the first success, then the episode ends", low=1
    )
    seed: int = option(0, help="seed of every episode's initial scene and action noise")
    output: str = option("outputs/datasets/metaworld", help="dataset folder")
    overwrite: bool = option(False, help="replace an existing dataset at output")
    video: bool = option(False, help="store frames as video (lossy) instead of lossless PNG")
    fps: int = option(CONTROL_HZ, help="frame rate recorded in the dataset (Meta-World controls at 80 Hz)", low=1)

    def __post_init__(self) -> None:
        fractions = {name: getattr(self, name) for name in ("noisy_fraction", "failed_fraction", "random_fraction")}
        if sum(fractions.values()) > 1.0 + 1e-9:
            total = sum(fractions.values())
            raise ConfigError(f"noisy, failed and random fractions add up to {total:.3g}, more than 1")


def episode_kinds(cfg: CollectConfig, rng: np.random.Generator) -> list[str]:
    """The kinds of one task's episodes, in shuffled order; counts follow the shares exactly."""
    shares = {
        "expert": 1.0 - cfg.noisy_fraction - cfg.failed_fraction - cfg.random_fraction,
        "noisy": cfg.noisy_fraction,
        "failed": cfg.failed_fraction,
        "random": cfg.random_fraction,
    }
    # rounding the running total keeps the counts summing to episodes_per_task
    edges = np.round(np.cumsum([0.0, *shares.values()]) * cfg.episodes_per_task).astype(int)
    kinds = np.repeat(list(shares), np.diff(edges))
    return [str(k) for k in rng.permutation(kinds)]


def held(draw: Callable[[], np.ndarray], steps: int) -> Callable[[], np.ndarray]:
    """A source of random vectors that repeats each draw for `steps` calls."""
    count, value = 0, None

    def next_value() -> np.ndarray:
        nonlocal count, value
        if value is None or count % steps == 0:  # (None: the first call, count 0)
            value = draw()
        count += 1
        return value

    return next_value


def make_actor(kind: str, task: str, cfg: CollectConfig, rng: np.random.Generator) -> Actor:
    dim, hold = len(ACTION_NAMES), cfg.action_hold_steps
    if kind == "random":
        uniform = held(lambda: rng.uniform(-1.0, 1.0, dim), hold)
        return lambda obs: uniform()
    expert = expert_policy(task)
    if kind == "expert":
        return expert.get_action
    if kind == "noisy":
        noise = held(lambda: rng.normal(0.0, cfg.expert_action_noise, dim), hold)
        return lambda obs: expert.get_action(obs) + noise()
    if kind == "failed":
        angle = rng.uniform(0.0, 2 * np.pi)
        offset = cfg.failed_target_offset * np.array([np.cos(angle), np.sin(angle), 0.0])
        return lambda obs: expert.get_action(_shift_targets(obs, offset))
    raise ValueError(f"unknown episode kind {kind!r} (known: {', '.join(KINDS)})")


def _shift_targets(obs: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The 39-d observation with both object positions and the goal moved by ``offset``."""
    shifted = obs.copy()
    for start in (4, 11, 36):  # object 1 xyz, object 2 xyz, goal xyz
        shifted[start : start + 3] += offset
    return shifted


Act = Callable[[dict[str, np.ndarray], dict[str, Any]], np.ndarray]  # observation, info -> action [A] or chunk [K,A]


@dataclass
class Rollout:
    """One episode in the sim: ``images[t]`` and ``states[t]`` are the observation before ``actions[t]``; the
    last observation follows the last action."""

    task: str
    instruction: str
    images: list[np.ndarray]  # T+1 uint8 [H,W,3]
    states: list[np.ndarray]  # T+1 float32 [S]
    actions: list[np.ndarray]  # T float32 [A]
    success_step: int | None  # index of the first observation that shows Meta-World's success flag

    @property
    def success(self) -> bool:
        return self.success_step is not None

    def episode(self, kind: str) -> Episode:
        """As a dataset episode: frame t is the observation before action t (the last observation is dropped)."""
        length = len(self.actions)
        # A success on the very last allowed step shows in no recorded frame: nothing to label it by.
        shown = self.success_step if self.success_step is not None and self.success_step < length else None
        done, subtask_index = done_labels(length, [] if shown is None else [shown])
        return Episode(
            frames=np.stack(self.images[:length]),
            actions=np.stack(self.actions),
            states=np.stack(self.states[:length]),
            done=done,
            subtask_index=subtask_index,
            task=self.task,
            instruction=self.instruction,
            success=shown is not None,
            kind=kind,
        )


def roll_out(env: PixelMetaWorldEnv, act: Act, seed: int, steps_after_success: int) -> Rollout:
    """Run ``act`` from reset ``seed`` (chunks open loop) until ``steps_after_success`` control steps after the
    first success (0: at the success), or the env ends the episode."""
    obs, info = env.reset(seed=seed)
    rollout = Rollout(env.task, env.instruction, [obs["image"]], [obs["state"]], [], None)
    while True:
        chunk = np.asarray(act(obs, info), np.float32).reshape(-1, env.action_space.shape[0])  # [K,A]
        for action in chunk:
            obs, _, terminated, truncated, info = env.step(action)
            rollout.actions.append(action)
            rollout.images.append(obs["image"])
            rollout.states.append(obs["state"])
            steps = len(rollout.actions)
            if info["success"] and rollout.success_step is None:
                rollout.success_step = steps
            if rollout.success_step is not None and steps - rollout.success_step >= steps_after_success:
                return rollout
            if terminated or truncated:
                return rollout


def record_episode(env: PixelMetaWorldEnv, kind: str, cfg: CollectConfig, seed: int) -> Episode:
    """Roll out one episode of ``kind``: frame t is the observation before action t."""
    actor = make_actor(kind, env.task, cfg, np.random.default_rng((seed, ACTOR_STREAM)))

    def act(obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        with warnings.catch_warnings():
            # the experts' proportional gains overshoot [-1, 1] by design: clipped here
            warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
            return np.clip(actor(info["metaworld_obs"]), -1.0, 1.0).astype(np.float32)

    return roll_out(env, act, seed, cfg.steps_after_success).episode(kind)


def task_rng(cfg: CollectConfig, task: str) -> np.random.Generator:
    """Draws a task's episode seeds and kinds; depends on the task's name, not its place in the list."""
    return np.random.default_rng((cfg.seed, zlib.crc32(task.encode())))
