"""The world model as a batched RL environment (rl/vec.py contract; a gymnasium VectorEnv).

    env = ImaginationEnv(wm, dataset, held_out, ImaginationConfig(num_envs=16))
    obs, info = env.reset(seed=0)                       # {"image", "goal"} uint8 [N,H,W,3] on wm.device
    obs, reward, terminated, truncated, info = env.step(actions)   # [N,A] or chunks [N,K,A]

Everything stays in torch tensors on the world model's device (no host copies on a GPU).

Reset (per row, same-step autoreset): a context episode is drawn from the pool (by default the
world-model run's held-out episodes), and a real window of `context_frames` frames `frame_skip`
recorded frames apart, with the mean actions between them, is encoded with `encode_context`; the
row's first observation is the window's last real frame, its goal comes from goals.py (goal model,
demo or user image) and is embedded once for the reward. Rows are reset with `State.replace`.

Step: one world-model step is `frame_skip` control steps. A decision's K actions (K control steps;
K=1 without chunks) are cut into groups of `frame_skip`, each group's mean is one world-model step
(a single action is held for the whole step, as a simulator would repeat it). Per world-model step
the reward is the endogenous reward (reward.py) of the predicted frame; a decision's reward is the
sum over the steps it ran. A row terminates when the predicted done probability reaches the
threshold on `done_steps` consecutive world-model steps (info["success"]: the *imagined* success, never
a real one; the bonus is paid only where the signal has held that long) and is truncated at
`max_steps` world-model steps; a chunk stops where its episode ends. With `uncertainty_penalty` each
step also costs the model's token entropy above what it shows on real held-out episodes (MOPO's
penalty on model uncertainty, with the dynamics' own entropy in place of an ensemble's disagreement).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.data.reader import EpisodeDataset, open_run_dataset
from roboscape_r_ros.imagination.errors import ActionError, ImaginationError, WorldModelMismatchError
from roboscape_r_ros.imagination.goals import (
    GoalBank,
    demo_goal_bank,
    image_goal_bank,
    load_goal_image,
    model_goal_bank,
)
from roboscape_r_ros.imagination.reward import EndogenousReward, RewardConfig
from roboscape_r_ros.world_model.config import InferenceConfig, WorldModelConfig
from roboscape_r_ros.world_model.dynamics import State
from roboscape_r_ros.world_model.model import WorldModel

MODEL_FILE, SPLIT_FILE = "world_model.safetensors", "split.json"


@dataclass
class ImaginationConfig:
    world_model: str = option(
        "", help="world-model run folder (world_model.safetensors + split.json) or a .safetensors checkpoint"
    )
    dataset: str = option("", help="dataset of the context episodes (default: the one the run's split.json names)")
    episodes: Literal["held_out", "held_out_and_added", "all"] = option(
        "held_out",
        help="context episodes: the run's held-out episodes (split.json); those and the episodes a dataset holds "
        "after the run's own (e.g. the policy's rollouts, `roboscape-r rollouts`); or every episode",
    )
    successful_only: bool = option(False, help="draw contexts only from successful episodes (demos)")
    goal: Literal["goal_model", "demo", "image"] = option(
        "goal_model", help="goal frame: imagined by the goal world model (paper), a demo's last frame, or goal_image"
    )
    goal_image: str = option("", help="goal=image: an 8-bit RGB PNG/JPEG of the world model's frame size")
    goal_max_steps: int = option(
        0,
        help="goal=goal_model: imagined steps at most (0: the longest context episode in world-model steps + 4)",
        low=0,
    )
    num_envs: int = option(16, help="parallel imagined environments (the world model's batch)", low=1)
    max_steps: int = option(40, help="step cap per episode in world-model steps (each frame_skip control steps)", low=1)
    context_frames: int = option(0, help="real context frames per reset (0: the model's context_length - 1)", low=0)
    start_fraction: float = option(
        0.0,
        help="context windows start uniformly in the first fraction of the room "
        "an episode leaves (0: always at the episode's first frame)",
        low=0.0,
        high=1.0,
    )
    terminate_on_done: bool = option(True, help="end an episode when the done signal holds (done_steps)")
    done_steps: int = option(
        1,
        help="consecutive world-model steps the done probability must reach the threshold before the bonus is "
        "paid and the episode ends (1: the first such step); more asks the model to be sure, not lucky once",
        low=1,
    )
    uncertainty_penalty: float = option(
        0.0,
        help="reward minus this weight x (token entropy - uncertainty_reference)+ per world-model step: imagined "
        "frames the model is less sure of than of held-out real ones cost (0: off)",
        low=0.0,
    )
    uncertainty_quantile: float = option(
        0.9,
        help="uncertainty_reference = this quantile of the token entropy measured at start on the context "
        "episodes (held-out by default) replayed with their recorded actions",
        low=0.0,
        high=1.0,
    )
    reward: RewardConfig = option(RewardConfig(), help="endogenous reward")
    inference: InferenceConfig = option(InferenceConfig(), help="how the world model imagines (speed settings)")
    seed: int = option(0, help="seed of the context and goal draws (reset(seed=...) overrides it)")


@dataclass
class WorldModelRun:
    checkpoint: Path
    split: dict[str, Any] | None = None  # split.json beside the checkpoint, when there is one

    @property
    def folder(self) -> Path:
        """The run folder: the checkpoint's (split.json lies beside it)."""
        return self.checkpoint.parent


def resolve_world_model(path: str | Path) -> WorldModelRun:
    """A run folder or a checkpoint file -> the checkpoint and the run's split (if any)."""
    if not str(path):
        raise ImaginationError("no world model given (set imagination.world_model=<run folder or .safetensors>)")
    path = Path(path)
    checkpoint = path / MODEL_FILE if path.is_dir() else path
    if not checkpoint.is_file():
        raise ImaginationError(f"{path}: no world-model checkpoint ({MODEL_FILE} expected in a run folder)")
    split_path = checkpoint.parent / SPLIT_FILE
    split = None
    if split_path.is_file():
        import json

        try:
            split = json.loads(split_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ImaginationError(f"{split_path}: unreadable JSON ({err})") from None
        if not isinstance(split, dict) or not isinstance(split.get("held_out"), list):
            raise ImaginationError(f"{split_path}: no 'held_out' episode list")
    return WorldModelRun(checkpoint, split)


def context_episodes(run: WorldModelRun, dataset: EpisodeDataset, which: str) -> list[int]:
    """The episode indices resets draw from: the run's held-out episodes (checked against the dataset, which
    may hold more episodes after the run's own), those plus the added ones, or all."""
    if dataset.num_episodes == 0:
        raise ImaginationError(f"{dataset.root}: the dataset holds no episodes")
    if which == "all":
        return list(range(dataset.num_episodes))
    if run.split is None:
        raise ImaginationError(
            f"{run.checkpoint}: no {SPLIT_FILE} beside it names held-out episodes "
            "(use a train-wm run folder, or imagination.episodes=all)"
        )
    episodes, frames = run.split.get("num_episodes"), run.split.get("num_frames")
    # the split's dataset, or one that begins with its episodes (e.g. with the policy's rollouts added)
    prefix = dataset.episodes[: episodes or 0]
    if len(prefix) != episodes or sum(e.length for e in prefix) != frames:
        raise ImaginationError(
            f"{run.folder / SPLIT_FILE}: made for a dataset of {episodes} episodes / {frames} frames; "
            f"{dataset.root} has {dataset.num_episodes} / {dataset.num_frames} and does not begin with them"
        )
    held_out = [int(e) for e in run.split["held_out"]]
    if which == "held_out_and_added":
        return held_out + list(range(episodes, dataset.num_episodes))
    if not held_out:
        raise ImaginationError(
            f"{run.folder / SPLIT_FILE}: no held-out episodes to start imagined episodes from "
            "(retrain with held_out_fraction > 0, or imagination.episodes=all)"
        )
    return held_out


class ConfiguredModel(Protocol):
    """What check_world_model reads: a WorldModel, or a runner over its exported pieces (runtime.inference)."""

    @property
    def cfg(self) -> WorldModelConfig: ...


def check_world_model(wm: ConfiguredModel, dataset: EpisodeDataset, where: str = "the world model") -> None:
    """WorldModelMismatchError unless the model takes the dataset's actions and frame size."""
    dims = len(dataset.action_names)
    if wm.cfg.action_dim != dims:
        raise WorldModelMismatchError(
            f"{where} takes {wm.cfg.action_dim}-D actions, dataset {dataset.root} has "
            f"{dims}-D actions ({', '.join(dataset.action_names)})"
        )
    size = wm.cfg.image_size
    if tuple(dataset.image_shape) != (size, size, 3):
        raise WorldModelMismatchError(
            f"{where} takes {size}x{size} frames, dataset {dataset.root} has "
            f"{dataset.image_shape[0]}x{dataset.image_shape[1]}"
        )


@dataclass
class _Pool:
    """Context episodes on the env's device: episode p is rows start[p]:start[p]+length[p]."""

    index: np.ndarray  # int64 [P] dataset episode index
    start: np.ndarray  # int64 [P]
    length: np.ndarray  # int64 [P]
    frames: torch.Tensor  # uint8 [F,H,W,3]
    actions: torch.Tensor  # float32 [F,A]
    instructions: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)


class ImaginationEnv(gym.vector.VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        wm: WorldModel,
        dataset: EpisodeDataset,
        episodes: Sequence[int],
        cfg: ImaginationConfig,
        goal_image: np.ndarray | torch.Tensor | str | None = None,
        distance=None,
        where: str = "the world model",
    ):
        self.cfg, self.wm = cfg, wm.eval()
        wm.configure(cfg.inference)
        self.device = wm.device
        check_world_model(wm, dataset, where)
        self.num_envs, self.action_dim = cfg.num_envs, wm.cfg.action_dim
        size = wm.cfg.image_size
        self.image_shape = (size, size, 3)
        self.frame_skip = wm.cfg.frame_skip
        capacity = wm.cfg.context_length - 1
        self.context_frames = cfg.context_frames or capacity
        if self.context_frames > capacity:
            raise ConfigError(
                f"imagination.context_frames={cfg.context_frames}: the world model holds at most "
                f"{capacity} context frames"
            )
        self.span = (self.context_frames - 1) * self.frame_skip + 1  # recorded frames a context window covers

        # spaces (gymnasium VectorEnv); values are returned as torch tensors on self.device
        frame = gym.spaces.Box(0, 255, self.image_shape, np.uint8)
        self.single_observation_space = gym.spaces.Dict({"image": frame, "goal": frame})
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        self.pool = self._make_pool(dataset, list(episodes))
        self.goals = self._make_goals(dataset, goal_image)
        self.warnings: list[str] = []
        if self.goals.fired is not None and self.goals.fired.mean() < 0.5:
            self.warnings.append(
                f"the goal model's done fired for only {int(self.goals.fired.sum())} of {len(self.goals.fired)} "
                "context episodes; the others' goals are its last imagined frames (check reward-sanity, or use "
                "goal=demo)"
            )
        self.reward_fn = EndogenousReward(cfg.reward, self.num_envs, self.device, distance)
        self.backend = self.reward_fn.backend

        n, dev = self.num_envs, self.device
        self.state: State | None = None
        self.image = torch.zeros((n, *self.image_shape), dtype=torch.uint8, device=dev)
        self.goal = torch.zeros_like(self.image)
        self.steps = torch.zeros(n, dtype=torch.long, device=dev)
        self.done_streak = torch.zeros(n, dtype=torch.long, device=dev)  # consecutive steps done reached the threshold
        self.episode = np.zeros(n, np.int64)  # dataset index of each row's context episode
        self.window_start = np.zeros(n, np.int64)  # its recorded frame where the context window begins
        self.rng = np.random.default_rng(cfg.seed)
        self._world_steps = torch.zeros((), dtype=torch.long, device=self.device)  # read as world_steps
        self.episodes_started = 0
        self.uncertainty_reference = self._uncertainty_reference() if cfg.uncertainty_penalty > 0 else None

    # -- construction ------------------------------------------------------------------------------
    def _make_pool(self, dataset: EpisodeDataset, episodes: list[int]) -> _Pool:
        if dataset.num_episodes == 0:
            raise ImaginationError(f"{dataset.root}: the dataset holds no episodes")
        if not episodes:
            raise ImaginationError(f"{dataset.root}: no context episodes to start imagined episodes from")
        bad = [e for e in episodes if not 0 <= e < dataset.num_episodes]
        if bad:
            raise ImaginationError(f"{dataset.root}: episode {bad[0]} out of range (0..{dataset.num_episodes - 1})")
        if self.cfg.successful_only:
            episodes = [e for e in episodes if dataset.episodes[e].success]
            if not episodes:
                raise ImaginationError(
                    f"{dataset.root}: successful_only=true, but none of the context episodes succeeded"
                )
        arrays = dataset.load_arrays()
        usable = [e for e in episodes if arrays.lengths[e] >= self.span]
        if not usable:
            raise ImaginationError(
                f"{dataset.root}: no context episode holds {self.span} frames ({self.context_frames} context frames "
                f"{self.frame_skip} apart; longest: {int(max(arrays.lengths[episodes]))}); lower "
                "imagination.context_frames"
            )
        index = np.asarray(usable, np.int64)
        lengths = arrays.lengths[index]
        rows = np.concatenate([np.arange(arrays.starts[e], arrays.starts[e] + arrays.lengths[e]) for e in index])
        return _Pool(
            index=index,
            start=np.cumsum(lengths) - lengths,
            length=lengths,
            frames=torch.as_tensor(arrays.frames[rows], device=self.device),
            actions=torch.as_tensor(arrays.actions[rows], device=self.device, dtype=torch.float32),
            instructions=[dataset.episodes[e].instruction for e in index],
            tasks=[dataset.episodes[e].task for e in index],
        )

    def _make_goals(self, dataset: EpisodeDataset, goal_image) -> GoalBank:
        source = "image" if goal_image is not None else self.cfg.goal
        if source == "image":
            image = goal_image if goal_image is not None else self.cfg.goal_image
            if image is None or (isinstance(image, str) and not image):
                raise ConfigError("imagination.goal=image needs imagination.goal_image=<PNG or JPEG file>")
            return image_goal_bank(load_goal_image(image, self.image_shape[0]), len(self.pool.index), self.device)
        if source == "demo":
            return demo_goal_bank(dataset, dataset.load_arrays(), self.pool.index.tolist(), self.device)
        max_steps = self.cfg.goal_max_steps or int(self.pool.length.max() - 1) // self.frame_skip + 4
        first = self.pool.frames[torch.as_tensor(self.pool.start, device=self.device)]
        return model_goal_bank(self.wm, first, self.pool.instructions, max_steps)

    @torch.no_grad()
    def _uncertainty_reference(self, windows: int = 64) -> float:
        """The token entropy the model shows on real data: context windows of the pool's episodes replayed
        open-loop with their recorded actions for up to max_steps world-model steps; its
        ``uncertainty_quantile`` is the level above which imagined frames cost (set before any training)."""
        rng = np.random.default_rng(self.cfg.seed)
        k = self.frame_skip
        pool_rows = rng.integers(len(self.pool.index), size=windows)
        room = self.pool.length[pool_rows] - self.span
        starts = np.floor(rng.random(windows) * (np.floor(self.cfg.start_fraction * room) + 1)).astype(np.int64)
        frames, actions = self._windows(pool_rows, starts)
        state = self.wm.encode_context(frames, actions)
        first = self.pool.start[pool_rows] + starts + self.span - 1  # [b] last context frame's row
        horizon = int(min(self.cfg.max_steps, (self.pool.length[pool_rows] - starts - self.span).max() // k))
        entropies, valid = [], []
        for h in range(max(horizon, 1)):
            rows = np.minimum(first[:, None] + h * k + np.arange(k), len(self.pool.actions) - 1)  # [b,k]
            recorded = self.pool.actions[torch.as_tensor(rows, device=self.device)].mean(1)  # [b,A]
            prediction = self.wm.imagine(state, recorded)
            state = prediction.state
            entropies.append(prediction.token_entropy.cpu().numpy())
            valid.append(starts + self.span - 1 + (h + 1) * k < self.pool.length[pool_rows])  # still inside its episode
        values = np.stack(entropies)[np.stack(valid)]
        return float(np.quantile(values, self.cfg.uncertainty_quantile)) if values.size else 0.0

    # -- episodes ----------------------------------------------------------------------------------
    def _windows(self, pool_rows: np.ndarray, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Context frames uint8 [b,C,H,W,3] and the mean actions between them [b,C-1,A]."""
        k, C = self.frame_skip, self.context_frames
        first = self.pool.start[pool_rows] + starts  # [b]
        rows = torch.as_tensor(first[:, None] + np.arange(self.span), device=self.device)  # [b,span]
        frames = self.pool.frames[rows[:, ::k]]  # [b,C,H,W,3]
        actions = self.pool.actions[rows[:, :-1]]  # [b,(C-1)k,A]
        actions = actions.view(len(first), C - 1, k, self.action_dim).mean(2)  # [b,C-1,A]
        return frames, actions

    def _start(self, rows: torch.Tensor) -> None:
        """Begin new episodes in env rows ``rows`` [b] (long, on device)."""
        b = len(rows)
        pool_rows = self.rng.integers(len(self.pool.index), size=b)
        room = self.pool.length[pool_rows] - self.span  # >= 0
        limit = np.floor(self.cfg.start_fraction * room).astype(np.int64)
        starts = np.floor(self.rng.random(b) * (limit + 1)).astype(np.int64)
        frames, actions = self._windows(pool_rows, starts)
        state = self.wm.encode_context(frames, actions)
        self.state = state if self.state is None or b == self.num_envs else self.state.replace(rows, state)
        goal = self.goals.frames[self.goals.draw(pool_rows, self.rng)]  # [b,H,W,3]
        self.goal[rows] = goal
        with self.wm.autocast():
            self.reward_fn.set_goals(rows, goal)
        self.image[rows] = frames[:, -1]
        self.steps[rows] = 0
        self.done_streak[rows] = 0
        self.episode[rows.cpu().numpy()] = self.pool.index[pool_rows]
        self.window_start[rows.cpu().numpy()] = starts
        self.episodes_started += b

    def _obs(self) -> dict[str, torch.Tensor]:
        return {"image": self.image.clone(), "goal": self.goal.clone()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.rng = np.random.default_rng(self.cfg.seed if seed is None else seed)
        self.state = None
        self._start(torch.arange(self.num_envs, device=self.device))
        return self._obs(), {"episode": self.episode.copy(), "window_start": self.window_start.copy()}

    def _world_actions(self, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
        """[N,A] or [N,K,A] control-step actions -> world-model actions [N,G,A] (means of frame_skip groups)."""
        actions = torch.as_tensor(actions, device=self.device).to(torch.float32)
        given = list(actions.shape)
        if actions.dim() == 2:
            actions = actions[:, None]
        if actions.dim() != 3 or actions.shape[0] != self.num_envs or actions.shape[2] != self.action_dim:
            raise ActionError(
                f"actions must be [{self.num_envs},{self.action_dim}] or "
                f"[{self.num_envs},K,{self.action_dim}], got {given}"
            )
        if not torch.isfinite(actions).all():
            raise ActionError("actions hold NaN or inf")
        actions = actions.clamp(-1.0, 1.0)
        K, k = actions.shape[1], self.frame_skip
        groups = math.ceil(K / k)
        return torch.stack([actions[:, g * k : (g + 1) * k].mean(1) for g in range(groups)], 1)

    @torch.no_grad()
    def step(self, actions: np.ndarray | torch.Tensor):
        if self.state is None:
            raise ImaginationError("step before reset: no imagined episodes to continue")
        world_actions = self._world_actions(actions)  # [N,G,A]
        n, dev = self.num_envs, self.device
        reward = torch.zeros(n, device=dev)
        alignment = torch.zeros(n, device=dev)
        bonus = torch.zeros(n, device=dev)
        done_prob = torch.zeros(n, device=dev)
        uncertainty = torch.zeros(n, device=dev)
        ran = torch.zeros(n, dtype=torch.long, device=dev)
        terminated = torch.zeros(n, dtype=torch.bool, device=dev)
        truncated = torch.zeros_like(terminated)
        threshold = self.cfg.reward.done_threshold
        for g in range(world_actions.shape[1]):
            active = ~(terminated | truncated)
            if g > 0 and not bool(active.any()):  # every row starts the step active: no device sync for g = 0
                break
            self.state, frame, done, entropy = self.wm.imagine(self.state, world_actions[:, g])
            done = done.float()
            self.done_streak = torch.where(active, (self.done_streak + 1) * (done >= threshold), self.done_streak)
            confirmed = self.done_streak >= self.cfg.done_steps
            with self.wm.autocast():
                terms = self.reward_fn(frame, done, fired=confirmed)
            step_reward = terms.reward
            if self.uncertainty_reference is not None:
                step_reward = step_reward - self.cfg.uncertainty_penalty * (entropy - self.uncertainty_reference).clamp(
                    min=0
                )
            reward += torch.where(active, step_reward, 0.0)
            alignment += torch.where(active, terms.alignment, 0.0)
            bonus += torch.where(active, terms.bonus, 0.0)
            done_prob = torch.where(active, done, done_prob)
            uncertainty = torch.where(active, entropy, uncertainty)
            self.image = torch.where(active[:, None, None, None], frame, self.image)
            self.steps += active.long()
            ran += active.long()
            if self.cfg.terminate_on_done:
                terminated |= active & confirmed
            truncated |= active & ~terminated & (self.steps >= self.cfg.max_steps)
        self._world_steps += ran.sum()  # stays on the device: read once per log line, not per step
        ended = terminated | truncated
        info: dict[str, Any] = {
            "success": terminated.clone(),  # imagined: the done head fired (never a real success)
            "goal_alignment": alignment,
            "done_bonus": bonus,
            "done_probability": done_prob,
            "token_entropy": uncertainty,
            "world_steps": ran,
            "episode": self.episode.copy(),
            "window_start": self.window_start.copy(),
            "reward_backend": self.backend,
        }
        if bool(ended.any()):
            info["final_obs"], info["_final_obs"] = self._obs(), ended
            self._start(torch.nonzero(ended).flatten())
        return self._obs(), reward, terminated, truncated, info

    @property
    def world_steps(self) -> int:
        """Imagined world-model steps over all rows since construction."""
        return int(self._world_steps)

    @property
    def control_steps(self) -> int:
        """Imagined control steps so far (world-model steps x frame_skip)."""
        return self.world_steps * self.frame_skip

    def describe(self) -> dict[str, Any]:
        fired = self.goals.fired
        return {
            "num_envs": self.num_envs,
            "context_episodes": len(self.pool.index),
            "context_episode_indices": self.pool.index.tolist(),
            "tasks": sorted(set(self.pool.tasks)),
            "context_frames": self.context_frames,
            "frame_skip": self.frame_skip,
            "max_world_steps": self.cfg.max_steps,
            "max_control_steps": self.cfg.max_steps * self.frame_skip,
            "start_fraction": self.cfg.start_fraction,
            "done_steps": self.cfg.done_steps,
            "uncertainty_penalty": self.cfg.uncertainty_penalty,
            "uncertainty_reference": self.uncertainty_reference,
            "goal_source": self.goals.source,
            "reward_backend": self.backend,
            "goal_model_fired": None if fired is None else float(fired.mean()),
            "warnings": list(self.warnings),
            "reward": {
                "done_bonus": self.cfg.reward.done_bonus,
                "done_threshold": self.cfg.reward.done_threshold,
                "alignment_offset": self.cfg.reward.alignment_offset,
                "alignment_scale": self.cfg.reward.alignment_scale,
            },
        }


def make_imagination_env(
    cfg: ImaginationConfig, device: str | torch.device = "cpu", *, action_dim: int | None = None
) -> tuple[ImaginationEnv, WorldModelRun]:
    """Load the world model and dataset named in ``cfg`` and build the env (held-out contexts by default).

    ``action_dim`` (the policy's) is checked against the checkpoint before anything heavy runs.
    """
    run = resolve_world_model(cfg.world_model)
    wm = WorldModel.from_checkpoint(run.checkpoint, device=device)
    if action_dim is not None and wm.cfg.action_dim != action_dim:
        raise WorldModelMismatchError(
            f"world model {run.checkpoint} takes {wm.cfg.action_dim}-D actions, the policy emits {action_dim}-D actions"
        )
    dataset_path = cfg.dataset or (run.split or {}).get("dataset", "")
    if not dataset_path:
        raise ImaginationError(
            f"{run.checkpoint}: no dataset given and no {SPLIT_FILE} names one "
            "(set imagination.dataset=<dataset folder>)"
        )
    dataset = open_run_dataset(dataset_path, run.split)
    check_world_model(wm, dataset, f"world model {run.checkpoint}")
    episodes = context_episodes(run, dataset, cfg.episodes)
    env = ImaginationEnv(wm, dataset, episodes, cfg, where=f"world model {run.checkpoint}")
    return env, run
