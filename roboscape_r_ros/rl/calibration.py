"""Imagined success: how often the world model says a policy succeeds, to set beside its real success.

    rates = imagined_success(policy, env, episodes=64)   # {"episodes", "success", "per_task"}

The gap between the two is the model's optimism about that policy (the calibration gap): a policy
that PPO tuned to the model's errors shows a high imagined and a low real success. Episodes run with
the policy's mean action, as the evaluation in the sim runs them, and should be as long as a sim
episode and start where a real one starts (the env's ``start_fraction=0``); each env row counts its
first ``ceil(episodes / num_envs)`` episodes, so short (successful) episodes are not over-sampled.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch

from roboscape_r_ros.imagination.env import ImaginationEnv
from roboscape_r_ros.rl.policy import ImagePolicy
from roboscape_r_ros.rl.vec import obs_to_tensors


@torch.no_grad()
def imagined_success(policy: ImagePolicy, env: ImaginationEnv, episodes: int, seed: int = 0) -> dict:
    per_row = math.ceil(episodes / env.num_envs)
    tasks = dict(zip(env.pool.index.tolist(), env.pool.tasks))
    counted = np.zeros(env.num_envs, np.int64)
    outcomes: dict[str, list[bool]] = defaultdict(list)
    obs, _ = env.reset(seed=seed)
    for _ in range(per_row * env.cfg.max_steps):  # every episode ends within max_steps decisions
        if (counted >= per_row).all():
            break
        actions = policy.clip_actions(policy.mean(obs_to_tensors(obs, policy.device, env.num_envs, env.image_shape)))
        obs, _, terminated, truncated, info = env.step(actions)
        for row in torch.nonzero(terminated | truncated).flatten().tolist():
            if counted[row] < per_row:
                outcomes[tasks[int(info["episode"][row])]].append(bool(terminated[row]))
                counted[row] += 1
    every = [s for task in outcomes.values() for s in task]
    return {
        "episodes": len(every),
        "success": float(np.mean(every)),
        "per_task": {task: float(np.mean(s)) for task, s in sorted(outcomes.items())},
    }
