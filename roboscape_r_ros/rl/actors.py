"""Actors for evaluation episodes in the physics sim: a trained policy, the scripted expert, random actions.

An actor is called once per decision with one observation {"image", "goal"} (uint8 [H,W,3] each)
and the env's info (the scripted expert reads its privileged ``metaworld_obs``), and returns one
action [A] or a chunk [K,A] in [-1, 1]; ``reset(task, seed)`` starts an episode and seeds the actor's
own randomness with the episode's reset seed, so an episode replays alike wherever it runs.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from roboscape_r_ros.envs.metaworld_env import ACTION_NAMES
from roboscape_r_ros.envs.tasks import expert_policy
from roboscape_r_ros.rl.goals import expert_actions_quietly
from roboscape_r_ros.rl.policy import ImagePolicy, obs_batch


class Actor(Protocol):
    def reset(self, task: str, seed: int) -> None: ...

    def __call__(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray: ...


class PolicyActor:
    """The policy's mean action (deterministic) or a sample from its Gaussian, clipped to [-1, 1]."""

    def __init__(self, policy: ImagePolicy, deterministic: bool = True):
        self.policy, self.deterministic = policy.eval(), deterministic
        self.generator = torch.Generator(policy.device)

    def reset(self, task: str, seed: int) -> None:
        self.generator.manual_seed(seed)

    @torch.no_grad()
    def __call__(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        batch = obs_batch(obs["image"], obs["goal"], self.policy.device)
        if self.deterministic:
            action = self.policy.mean(batch)  # [1,K,A]
        else:
            dist = self.policy.distribution(batch)  # over [1,K*A]
            action = torch.normal(dist.mean, dist.stddev, generator=self.generator)
        return self.policy.clip_actions(action)[0].view(-1, self.policy.cfg.action_dim).cpu().numpy()  # [K,A]


class ExpertActor:
    """Meta-World's scripted expert for the episode's task (reads privileged simulator state)."""

    def reset(self, task: str, seed: int) -> None:
        self.expert = expert_policy(task)

    def __call__(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        return expert_actions_quietly(self.expert, info["metaworld_obs"])


class RandomActor:
    """Uniform random actions in [-1, 1]: the floor any learned policy should clear."""

    def __init__(self, action_dim: int = len(ACTION_NAMES)):
        self.action_dim = action_dim

    def reset(self, task: str, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)
