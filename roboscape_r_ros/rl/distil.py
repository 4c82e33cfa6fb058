"""Imagine, filter, distil: a second learner in imagination, with no return to maximise.

Each round rolls the current policy out in the world model (actions sampled from its Gaussian, so
rounds explore), keeps the imagined episodes whose done signal holds (the env ends them as
terminated: the done head fired ``imagination.done_steps`` times in a row), and clones those
decisions, mixed with the demos, into the policy (behaviour cloning from the current weights).
After Ctrl-World (arXiv 2510.10125: imagine, keep what succeeds, distil). PPO can climb the world
model's errors through the dense reward; this learner can only follow what the done head accepts,
so its calibration gap (imagined vs real success) says how far that judge can be trusted.

    history = train_distil(policy, env, demos, cfg, bc_cfg, log)   # one stats dict per round
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from roboscape_r_ros.config import option
from roboscape_r_ros.imagination.env import ImaginationEnv
from roboscape_r_ros.rl.bc import BCConfig, DemoSet, clone_step
from roboscape_r_ros.rl.policy import ImagePolicy
from roboscape_r_ros.rl.vec import obs_to_tensors

Log = Callable[[int, dict[str, float]], None]


@dataclass
class DistilConfig:
    rounds: int = option(4, help="imagine-filter-distil rounds", low=1)
    episodes: int = option(
        128, help="imagined episodes per round (each ends by the done signal or the step cap)", low=1
    )
    steps: int = option(300, help="behaviour-cloning steps per round on the kept decisions and the demos", low=1)
    demo_share: float = option(
        0.5, help="share of each batch drawn from the demos (the rest: kept imagined decisions)", low=0.0, below=1.0
    )


@dataclass
class Kept:
    """Decisions of the imagined episodes the done signal accepted (uint8 frames on the CPU)."""

    image: torch.Tensor  # [M,H,W,3]
    goal: torch.Tensor  # [M,H,W,3]
    action: torch.Tensor  # [M,K,A] clipped to [-1, 1]


@torch.no_grad()
def imagine_and_filter(policy: ImagePolicy, env: ImaginationEnv, episodes: int, seed: int) -> tuple[Kept, int, int]:
    """Roll ``policy`` out for ``episodes`` imagined episodes; returns the accepted ones' decisions,
    how many episodes ended accepted, and the world-model decisions taken."""
    n = env.num_envs
    rows: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [[] for _ in range(n)]
    kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    ended = accepted = decisions = 0
    obs, _ = env.reset(seed=seed)
    while ended < episodes:
        obs_t = obs_to_tensors(obs, policy.device, n, env.image_shape)
        action = policy.clip_actions(policy.get_action_and_value(obs_t)[0])  # [N,K,A]
        next_obs, _, terminated, truncated, _ = env.step(action)
        decisions += n
        for r in range(n):
            rows[r].append((obs_t["image"][r].cpu(), obs_t["goal"][r].cpu(), action[r].cpu()))
        for r in torch.nonzero(terminated | truncated).flatten().tolist():
            if ended < episodes:
                ended += 1
                if terminated[r]:
                    accepted += 1
                    kept += rows[r]
            rows[r] = []
        obs = next_obs
    if not kept:
        empty = torch.zeros((0, *env.image_shape), dtype=torch.uint8)
        return Kept(empty, empty.clone(), torch.zeros((0, policy.cfg.chunk, policy.cfg.action_dim))), 0, decisions
    image, goal, act = (torch.stack(parts) for parts in zip(*kept))
    return Kept(image, goal, act), accepted, decisions


def train_distil(
    policy: ImagePolicy,
    env: ImaginationEnv,
    demos: DemoSet,
    cfg: DistilConfig,
    bc: BCConfig,
    log: Log | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train ``policy`` in place for ``cfg.rounds`` rounds; returns one stats dict per round (also to ``log``).
    The batches, learning rate and augmentation are behaviour cloning's (``bc``)."""
    optimizer = torch.optim.Adam(policy.actor_parameters(), lr=bc.lr)
    rng = np.random.default_rng((bc.seed, 2))
    from_demos = round(bc.batch_size * cfg.demo_share)
    history: list[dict[str, float]] = []
    decisions = 0
    bar = tqdm(range(1, cfg.rounds + 1), unit="round", desc="distil", disable=not progress)
    for k in bar:
        kept, accepted, taken = imagine_and_filter(policy, env, cfg.episodes, seed=bc.seed + k)
        decisions += taken
        loss = float("nan")
        if len(kept.action):
            for _ in range(cfg.steps):
                obs, target = demos.sample(from_demos)  # {[D,H,W,3]}, [D,K,A]
                pick = torch.from_numpy(rng.integers(len(kept.action), size=bc.batch_size - from_demos))
                obs = {key: torch.cat([obs[key], getattr(kept, key)[pick]]) for key in ("image", "goal")}
                target = torch.cat([target, kept.action[pick]])  # [B,K,A]
                step_loss = clone_step(policy.mean, optimizer, obs, target, bc, rng, policy.device)
            loss = step_loss.item()
        stats = {
            "round": float(k),
            "decisions": float(decisions),
            "distil/imagined_success": accepted / cfg.episodes,
            "distil/kept_decisions": float(len(kept.action)),
            "distil/loss": loss,
        }
        history.append(stats)
        if log is not None:
            log(k, stats)
        bar.set_postfix(success=f"{accepted / cfg.episodes:.2f}", kept=len(kept.action))
    return history
