"""Behaviour cloning warm start: regress the policy's mean action onto the demos of a dataset.

Demos are the dataset's successful episodes (Meta-World's success flag, whatever their kind). A
sample is (frame t, goal frame, actions t..t+K-1); the chunk is padded with the episode's last
action past its end. The goal frame is
    episode_end  the episode's own last frame (hindsight: exactly the goal this episode reached)
    same_task    the last frame of a random successful episode of the same task (its own included),
                 which teaches the policy to act from a goal frame of another episode
Loss: mean squared error between the tanh-bounded Gaussian mean and the demo actions (already
clipped to [-1, 1]); the log std is left at its initial value, which sets PPO's first exploration.
Optional random-shift augmentation moves frame and goal by the same random offset (as a camera
jitter would move both); optional colour augmentation scales each sample's brightness, contrast and
colour channels by factors drawn from [1 - colour, 1 + colour], the same for frame and goal (one
scene seen under other light and paint). A held-out share of the demo episodes measures the action
error.

With a run folder, every held-out measurement also saves `bc-resume.safetensors` (weights, Adam
state, step, the samplers' random states and the stats so far; no pickle), and a rerun continues
from it exactly where the interrupted run was. Under torchrun (roboscape_r_ros.distributed) each
rank clones its rows of every global batch through DistributedDataParallel; rank 0 saves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from roboscape_r_ros.config import option, to_dict
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.data.windows import split_episodes
from roboscape_r_ros.distributed import data_parallel, draw, mean_metrics, ranks
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.rl.policy import ImagePolicy
from roboscape_r_ros.rl.resume import load_resume, save_resume

Log = Callable[[int, dict[str, float]], None]
RESUME_FILE = "bc-resume.safetensors"
RESUME_FORMAT = "roboscape_r_ros.bc_resume/2"


class BCDataError(RoboscapeError, ValueError):
    """A dataset with nothing to clone (no successful episode)."""


@dataclass
class BCConfig:
    dataset: str = option("outputs/datasets/metaworld", help="dataset folder whose successful episodes are the demos")
    steps: int = option(2000, help="optimisation steps", low=1)
    batch_size: int = option(64, help="samples per step", low=1)
    lr: float = option(1e-3, help="Adam learning rate")
    goal: Literal["episode_end", "same_task"] = option(
        "episode_end", help="goal frame: the episode's last frame, or a random success of the same task"
    )
    shift: int = option(0, help="random-shift augmentation in pixels (same shift for frame and goal); 0 = off", low=0)
    colour: float = option(
        0.0,
        help="colour augmentation: brightness, contrast and each channel scaled by factors from [1 - colour, "
        "1 + colour] per sample (same for frame and goal); 0 = off",
        low=0.0,
        below=1.0,
    )
    held_out_fraction: float = option(0.1, help="share of demo episodes kept out of training to measure action error")
    eval_every: int = option(200, help="steps between held-out action-error measurements", low=1)
    seed: int = option(0, help="seed of the split, the sampling and the augmentation")


class DemoSet:
    """Samples (frame, goal, action chunk) from chosen successful episodes of a decoded dataset."""

    def __init__(self, dataset: EpisodeDataset, episodes: np.ndarray, chunk: int, goal: str, seed: int):
        data = dataset.load_arrays()
        self.frames, self.actions, self.goal_mode = data.frames, data.actions, goal
        starts, ends = data.starts[episodes], data.starts[episodes] + data.lengths[episodes] - 1  # [E]
        lengths = data.lengths[episodes]
        self.rows = np.concatenate([np.arange(s, e + 1) for s, e in zip(starts, ends)])  # [M]
        self.own_end = np.repeat(ends, lengths)  # [M]
        self.chunk_rows = np.minimum(self.rows[:, None] + np.arange(chunk), self.own_end[:, None])  # [M,K]
        task = data.task_index[episodes]  # [E]
        self.task = np.repeat(task, lengths)  # [M]
        self.ends_of_task = {int(t): ends[task == t] for t in np.unique(task)}
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def goal_rows(self, pick: np.ndarray) -> np.ndarray:
        if self.goal_mode == "episode_end":
            return self.own_end[pick]
        out = np.empty(len(pick), np.int64)
        for t, ends in self.ends_of_task.items():
            mine = self.task[pick] == t
            out[mine] = ends[self.rng.integers(len(ends), size=int(mine.sum()))]
        return out

    def batch(self, pick: np.ndarray, goals: np.ndarray | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Samples `pick` [B] with goal frames at rows `goals` [B] (default: drawn by `goal_rows`)."""
        obs = {
            "image": torch.from_numpy(self.frames[self.rows[pick]]),  # [B,H,W,3]
            "goal": torch.from_numpy(self.frames[self.goal_rows(pick) if goals is None else goals]),  # [B,H,W,3]
        }
        return obs, torch.from_numpy(self.actions[self.chunk_rows[pick]])  # [B,K,A]

    def sample(self, batch_size: int, shard: slice = slice(None)) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """A random batch of `batch_size`, or a torchrun rank's `shard` of its rows (all ranks draw alike)."""
        pick = self.rng.integers(len(self.rows), size=batch_size)
        return self.batch(pick[shard], self.goal_rows(pick)[shard])


def demo_episodes(dataset: EpisodeDataset) -> np.ndarray:
    episodes = np.array([m.index for m in dataset.episodes if m.success], np.int64)
    if episodes.size == 0:
        raise BCDataError(f"{dataset.root}: no successful episode to clone (of {dataset.num_episodes})")
    return episodes


def random_shift(obs: dict[str, torch.Tensor], pad: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Shift each sample's frame and goal by one random offset in [-pad, pad] pixels (edges replicated)."""
    if pad == 0:
        return obs
    batch, height, width = obs["image"].shape[:3]

    def shifts(size: tuple[int, ...]) -> np.ndarray:
        return rng.integers(0, 2 * pad + 1, size)

    offsets = draw(shifts, (batch, 2))  # torchrun: this rank's rows of the draw
    out = {}
    for key, frames in obs.items():
        padded = torch.nn.functional.pad(frames.permute(0, 3, 1, 2).float(), (pad,) * 4, mode="replicate")
        crops = [padded[i, :, y : y + height, x : x + width] for i, (y, x) in enumerate(offsets)]
        out[key] = torch.stack(crops).permute(0, 2, 3, 1).to(torch.uint8)  # [B,H,W,3]
    return out


def random_colour(obs: dict[str, torch.Tensor], strength: float, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Scale each sample's contrast, brightness and channels (frame and goal alike) by factors in [1 -+ strength]."""
    if strength == 0:
        return obs
    batch = obs["image"].shape[0]

    def scales(size: tuple[int, ...]) -> np.ndarray:
        return rng.uniform(1 - strength, 1 + strength, size)

    drawn = draw(scales, (batch, 5))  # contrast, brightness, r, g, b
    factors = torch.as_tensor(drawn, dtype=torch.float32, device=obs["image"].device)
    contrast, gain = factors[:, 0, None, None, None], factors[:, 1, None, None, None] * factors[:, None, None, 2:]
    out = {}
    for key, frames in obs.items():
        x = frames.float()  # [B,H,W,3]
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        out[key] = (((x - mean) * contrast + mean) * gain).clamp(0, 255).round().to(torch.uint8)
    return out


@torch.no_grad()
def action_error(policy: ImagePolicy, demos: DemoSet, batch_size: int = 256) -> float:
    """Mean squared error of the policy's mean action chunk against every sample of ``demos``."""
    total, count = 0.0, 0
    for begin in range(0, len(demos), batch_size):
        pick = np.arange(begin, min(begin + batch_size, len(demos)))
        obs, target = demos.batch(pick)
        obs = {k: v.to(policy.device) for k, v in obs.items()}
        total += ((policy.mean(obs) - target.to(policy.device)) ** 2).mean(dim=(1, 2)).sum().item()
        count += len(pick)
    return total / count


def train_bc(
    policy: ImagePolicy,
    dataset: EpisodeDataset,
    cfg: BCConfig,
    log: Log | None = None,
    progress: bool = True,
    run_dir: str | Path | None = None,
) -> list[dict[str, float]]:
    """Clone the dataset's successful episodes into ``policy`` (in place); returns the logged stats.
    With ``run_dir``, save a resume point there at every measurement, and continue from one."""
    policy.check_compatible(len(dataset.action_names), dataset.image_shape, f"dataset {dataset.root}")
    train_eps, held_out_eps = split_episodes(demo_episodes(dataset), cfg.held_out_fraction, cfg.seed)
    chunk = policy.cfg.chunk
    train = DemoSet(dataset, train_eps, chunk, cfg.goal, cfg.seed)
    held_out = DemoSet(dataset, held_out_eps, chunk, cfg.goal, cfg.seed + 1) if held_out_eps.size else None
    optimizer = torch.optim.Adam(policy.actor_parameters(), lr=cfg.lr)
    aug_rng = np.random.default_rng((cfg.seed, 1))
    rngs = {"train": train.rng, "shift": aug_rng, **({"held_out": held_out.rng} if held_out is not None else {})}
    history: list[dict[str, float]] = []
    rank = ranks()
    shard = rank.shard(cfg.batch_size, "bc.batch_size")  # this rank's rows of every batch
    # log_std is not trained by BC: DDP averages the gradients of the actor's networks only
    actor_mean = data_parallel(nn.ModuleList([policy.actor_encoder, policy.actor_mean]), policy.mean)
    resume = Path(run_dir) / RESUME_FILE if run_dir is not None else None

    def measure(step: int, loss: float) -> None:
        stats = {"step": float(step), "bc/loss": loss}
        if held_out is not None:
            stats["bc/held_out_action_mse"] = action_error(policy, held_out)
        history.append(stats)
        if log is not None:
            log(step, stats)
        if resume is not None and rank.main:
            rng_states = {name: rng.bit_generator.state for name, rng in rngs.items()}
            save_resume(resume, RESUME_FORMAT, policy, optimizer, step, _config(policy, cfg), history, rng_states)

    first = 0
    if resume is not None and resume.exists():
        # steps and eval_every may change; the rest shapes what was trained
        first, history[:], rng_states = load_resume(
            resume, RESUME_FORMAT, policy, optimizer, _config(policy, cfg), ("steps", "eval_every")
        )
        for name, rng in rngs.items():
            rng.bit_generator.state = rng_states[name]
    else:
        measure(0, float("nan"))
    bar = tqdm(
        range(first + 1, cfg.steps + 1),
        unit="step",
        desc="bc",
        initial=first,
        total=cfg.steps,
        disable=not (progress and rank.main),
    )
    for step in bar:
        obs, target = train.sample(cfg.batch_size, shard)  # {[B,H,W,3]}, [B,K,A]
        loss = clone_step(actor_mean, optimizer, obs, target, cfg, aug_rng, policy.device)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            measure(step, mean_metrics({"loss": loss.item()})["loss"])
            bar.set_postfix(loss=f"{history[-1]['bc/loss']:.4f}")
    return history


def clone_step(
    mean: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    obs: dict[str, torch.Tensor],
    target: torch.Tensor,
    cfg: BCConfig,
    rng: np.random.Generator,
    device: torch.device,
) -> torch.Tensor:
    """One behaviour-cloning step on a batch (``obs`` {[B,H,W,3]}, ``target`` [B,K,A]): ``cfg``'s shift and
    colour augmentation, then the squared error of the mean action chunk; returns the loss."""
    obs = random_colour(random_shift(obs, cfg.shift, rng), cfg.colour, rng)
    obs = {k: v.to(device) for k, v in obs.items()}
    loss = ((mean(obs) - target.to(device)) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def _config(policy: ImagePolicy, cfg: BCConfig) -> dict:
    return {"bc": to_dict(cfg), "policy": to_dict(policy.cfg)}
