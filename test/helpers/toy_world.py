"""A toy grid world small enough to train a world model and a policy in it within seconds on a CPU.

A red square moves on a 4x4 grid of 8 px cells over a 32x32 frame (one cell = one world-model
token, so a tiny tokenizer and dynamics learn it in seconds); the task is to bring it onto the cell
framed in blue (the top-left cell). Actions are 2-D in [-1, 1]: a component beyond +-1/3 moves the square
one cell that way. Episodes are written as a real dataset (LeRobot v3 layout, the paper's
done labels exp(4 (k/(N-1) - 1)) on successes, 0 on failures), so world-model training, held-out
splits and the imagination env run on it exactly as on Meta-World data. ``ToyGridEnv`` is the
ground-truth world as a batched env (rl/vec.py contract): the "physics sim" that checks whether a
policy trained in imagination transfers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from roboscape_r_ros.config import load_config
from roboscape_r_ros.data.lerobot import DatasetWriter, Episode
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.imagination.errors import ActionError
from roboscape_r_ros.rl.policy import ImagePolicy
from roboscape_r_ros.world_model import WorldModel, WorldModelConfig, train_action_model, train_tokenizer
from roboscape_r_ros.world_model.data import SkipWindows, stratified_split

SIZE, GRID = 32, 8
GOAL = np.array([0, 0])  # the marked cell (x, y)
TASK, INSTRUCTION = "reach-marker", "move the red square onto the blue marker"
CELLS = np.arange(SIZE // GRID)  # 4 cells per axis


def render(pos: np.ndarray, background: int = 40) -> np.ndarray:
    """Square cells [...,2] (x, y) -> uint8 frames [...,32,32,3] (``background``: the floor's grey level)."""
    pos = np.asarray(pos)
    lead = pos.shape[:-1]
    flat = pos.reshape(-1, 2)
    frames = np.full((len(flat), SIZE, SIZE, 3), background, np.uint8)
    gx, gy = GOAL * GRID
    frames[:, gy : gy + GRID, gx : gx + GRID] = (40, 90, 230)  # the marker: a blue frame 1 px wide
    frames[:, gy + 1 : gy + GRID - 1, gx + 1 : gx + GRID - 1] = background
    for i, (x, y) in enumerate(flat * GRID):  # the square: 6x6 px, inside the marker's frame on the goal
        frames[i, y + 1 : y + GRID - 1, x + 1 : x + GRID - 1] = (230, 50, 40)
    return frames.reshape(*lead, SIZE, SIZE, 3)


def move(pos: np.ndarray, action: np.ndarray) -> np.ndarray:
    return np.clip(pos + np.sign(action) * (np.abs(action) > 1 / 3), 0, len(CELLS) - 1).astype(np.int64)


def expert_action(pos: np.ndarray) -> np.ndarray:
    """Towards the marker, x first then y, at 0.8 (one cell per step)."""
    axis = 0 if pos[0] != GOAL[0] else 1
    return 0.8 * np.sign(GOAL - pos) * (np.arange(2) == axis)


def episode(rng: np.random.Generator, kind: str, max_len: int = 12, background: int = 40) -> Episode:
    """One episode of ``kind``: expert (noise 0.1), noisy (noise 0.6) or random actions."""
    pos = rng.choice(CELLS, 2)
    while (pos == GOAL).all():
        pos = rng.choice(CELLS, 2)
    positions, actions = [pos], []
    noise = {"expert": 0.1, "noisy": 0.6}.get(kind, 0.0)
    while len(positions) < max_len and not (pos == GOAL).all():
        if kind == "random":
            action = rng.uniform(-1, 1, 2)
        else:
            action = np.clip(expert_action(pos) + rng.normal(0, noise, 2), -1, 1)
        pos = move(pos, action)
        positions.append(pos)
        actions.append(action)
    actions.append(np.zeros(2))  # no action after the last frame
    n, success = len(positions), bool((pos == GOAL).all())
    done = np.exp(4 * (np.arange(n) / max(n - 1, 1) - 1)) if success else np.zeros(n)
    states = np.asarray(positions, np.float32)
    return Episode(
        frames=render(np.asarray(positions), background),
        actions=np.asarray(actions, np.float32),
        states=states,
        done=done.astype(np.float32),
        subtask_index=np.zeros(n, np.int64),
        task=TASK,
        instruction=INSTRUCTION,
        success=success,
        kind=kind,
    )


def write_toy_dataset(
    root: str | Path, episodes: dict[str, int] | None = None, seed: int = 0, max_len: int = 12, background: int = 40
) -> Path:
    """Write a toy dataset (default 40 expert, 80 noisy, 40 random episodes) to ``root``; another
    ``background`` is a changed scene."""
    episodes = episodes or {"expert": 40, "noisy": 80, "random": 40}
    rng = np.random.default_rng(seed)
    with DatasetWriter(
        Path(root),
        fps=10,
        camera="toy",
        image_shape=(SIZE, SIZE, 3),
        action_names=["dx", "dy"],
        state_names=["x", "y"],
        robot_type="toy",
        overwrite=True,
    ) as writer:
        for kind, count in episodes.items():
            for _ in range(count):
                writer.add_episode(episode(rng, kind, max_len, background))
    return Path(root)


def write_run(folder: Path, wm: WorldModel, dataset: EpisodeDataset, held_out: list[int]) -> Path:
    """``wm`` as a train-wm run folder over ``dataset``: world_model.safetensors + split.json (the rest trains)."""
    folder.mkdir(parents=True, exist_ok=True)
    wm.save(folder / "world_model.safetensors")
    (folder / "split.json").write_text(
        json.dumps(
            {
                "dataset": str(dataset.root),
                "num_episodes": dataset.num_episodes,
                "num_frames": dataset.num_frames,
                "train": [e for e in range(dataset.num_episodes) if e not in held_out],
                "held_out": held_out,
            }
        )
    )
    return folder


def train_toy_world_model(root: Path) -> tuple[EpisodeDataset, Path]:
    """A toy dataset under ``root`` and a train-wm run folder (world_model.safetensors + split.json) of a
    tiny world model trained on its training split (~15 s on 2 busy cores)."""
    start = time.perf_counter()
    dataset = EpisodeDataset.open(write_toy_dataset(root / "toy"))
    train, held_out = stratified_split(dataset.episodes, 0.15, seed=0)
    cfg = load_config(
        WorldModelConfig,
        "world_model",
        "tiny",
        ["image_size=32", "action_dim=2", "context_length=2", "tokenizer.levels=[5,5,5]", "train.lr=1e-2"],
    )
    torch.manual_seed(0)
    wm = WorldModel(cfg)

    def batches(seed):
        yield from SkipWindows(dataset, context_length=2, frame_skip=1, batch_size=16, episodes=train, seed=seed)

    train_tokenizer(wm, batches(0), steps=100, progress=False)
    wm.cfg.train.lr = 5e-3
    history = train_action_model(wm, batches(1), steps=150, progress=False)
    run = write_run(root / "wm_run", wm, dataset, held_out)
    print(f"toy world model trained in {time.perf_counter() - start:.1f} s: {history[-1]}")
    return dataset, run


class ToyGridEnv:
    """The ground-truth grid world as a batched env: goal frame = the square on the marker.

    reward: -1 per step, +10 on reaching the marker (terminated, info["success"]); truncated at max_steps.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
    action_dim = 2
    image_shape = (SIZE, SIZE, 3)

    def __init__(self, num_envs: int = 16, max_steps: int = 6, seed: int = 0):
        self.num_envs, self.max_steps = num_envs, max_steps
        self.rng = np.random.default_rng(seed)
        self.pos = np.zeros((num_envs, 2), np.int64)
        self.steps = np.zeros(num_envs, np.int64)
        self.goal = np.broadcast_to(render(GOAL), (num_envs, SIZE, SIZE, 3)).copy()

    def _draw(self, rows: np.ndarray) -> None:
        for i in rows:
            pos = self.rng.choice(CELLS, 2)
            while (pos == GOAL).all():
                pos = self.rng.choice(CELLS, 2)
            self.pos[i], self.steps[i] = pos, 0

    def _obs(self) -> dict[str, torch.Tensor]:
        return {"image": torch.from_numpy(render(self.pos)), "goal": torch.from_numpy(self.goal.copy())}

    def reset(self, *, seed: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._draw(np.arange(self.num_envs))
        return self._obs(), {}

    def step(self, actions):
        actions = torch.as_tensor(actions).detach().cpu().numpy().astype(np.float32)
        if actions.ndim == 2:
            actions = actions[:, None]
        if actions.shape[0] != self.num_envs or actions.shape[-1] != 2:
            raise ActionError(f"actions must be [{self.num_envs},K,2], got {list(actions.shape)}")
        reward = np.zeros(self.num_envs, np.float32)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        for k in range(actions.shape[1]):
            active = ~(terminated | truncated)
            for i in np.flatnonzero(active):
                self.pos[i] = move(self.pos[i], actions[i, k])
            self.steps += active
            hit = active & (self.pos == GOAL).all(1)
            reward += np.where(active, -1.0 + 10.0 * hit, 0.0)
            terminated |= hit
            truncated |= active & ~hit & (self.steps >= self.max_steps)
        ended = terminated | truncated
        info: dict[str, Any] = {"success": terminated.copy()}
        if ended.any():
            info["final_obs"], info["_final_obs"] = self._obs(), ended
            self._draw(np.flatnonzero(ended))
        return self._obs(), reward, terminated, truncated, info

    def close(self) -> None:
        pass


def real_success(policy: ImagePolicy, n: int = 64) -> float:
    """Success rate of the policy's mean action in the real toy world (6-step cap)."""
    env = ToyGridEnv(num_envs=n, max_steps=6, seed=123)
    obs, _ = env.reset()
    success, alive = np.zeros(n, bool), np.ones(n, bool)
    for _ in range(6):
        with torch.no_grad():
            obs, _, terminated, truncated, _ = env.step(policy.mean(obs)[:, 0])
        success |= terminated & alive
        alive &= ~(terminated | truncated)
    return float(success.mean())
