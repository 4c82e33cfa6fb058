"""The physics sim as one batched env (vec.py contract): the exogenous-reward baseline's environment.

N ``PixelMetaWorldEnv`` instances stepped in order in this process (MuJoCo rendering is the cost and
it does not overlap on 2 cores). Env i runs task ``tasks[i % len(tasks)]``. Every episode starts from
a fresh reset seed drawn from env i's own stream, so runs are reproducible.

Observation {"image", "goal"}: uint8 [N,H,W,3]. Goal frames come from ``goals.py``; by default the
scripted expert's end frame from the same reset seed (``ExpertGoal``), redrawing the seed when the
expert fails, so every training episode has a reachable goal. Reward: Meta-World's hand-written
dense reward (the "exogenous" reward), summed over a chunk. info["success"]: Meta-World's success
flag at any step of the decision. Episodes are truncated at ``env.max_steps`` control steps (the
Meta-World convention); ``terminate_on_success`` ends them at success instead (off by default:
Meta-World's reward is positive, so ending at success would cut off the reward success earns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.envs.metaworld_env import ACTION_NAMES, EnvConfig, PixelMetaWorldEnv
from roboscape_r_ros.rl.goals import DemoGoal, ExpertGoal, GoalError, GoalSource
from roboscape_r_ros.rl.vec import Array, EnvContractError


@dataclass
class SimEnvConfig:
    env: EnvConfig = option(EnvConfig(), help="Meta-World tasks, resolution, camera, step cap and scene")
    num_envs: int = option(4, help="parallel envs (env i runs task i modulo the number of tasks)", low=1)
    goal: Literal["expert", "demo"] = option(
        "expert", help="goal frame: the scripted expert's end frame from the same reset seed, or a demo's last frame"
    )
    goal_dataset: str = option("", help="dataset whose successful episodes' last frames are goals (goal=demo)")
    goal_draws: int = option(
        5, help="reset seeds tried per episode until the scripted expert solves it (goal=expert)", low=1
    )
    terminate_on_success: bool = option(False, help="end an episode at Meta-World's success flag")
    seed: int = option(0, help="seed of the reset-seed streams (reset(seed=...) overrides it)")

    def __post_init__(self) -> None:
        if self.goal == "demo" and not self.goal_dataset:
            raise ConfigError("goal=demo needs goal_dataset=<dataset folder>")


def make_goal_source(cfg: SimEnvConfig) -> GoalSource:
    return DemoGoal(cfg.goal_dataset, seed=cfg.seed) if cfg.goal == "demo" else ExpertGoal()


class SimVectorEnv(gym.vector.VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, cfg: SimEnvConfig, goal_source: GoalSource | None = None):
        self.cfg = cfg
        self.num_envs = cfg.num_envs
        self.tasks = [cfg.env.tasks[i % len(cfg.env.tasks)] for i in range(cfg.num_envs)]
        self.goal_source = goal_source or make_goal_source(cfg)
        self.envs = [PixelMetaWorldEnv(task, cfg.env) for task in self.tasks]
        size = cfg.env.resolution
        self.image_shape = (size, size, 3)
        self.action_dim = len(ACTION_NAMES)
        frame = gym.spaces.Box(0, 255, self.image_shape, np.uint8)
        self.single_observation_space = gym.spaces.Dict({"image": frame, "goal": frame})
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._images = np.zeros((self.num_envs, *self.image_shape), np.uint8)  # [N,H,W,3]
        self._goals = np.zeros_like(self._images)  # [N,H,W,3]
        self._seed_streams = [np.random.default_rng((cfg.seed, i)) for i in range(self.num_envs)]
        self.episode_seeds = [0] * self.num_envs  # reset seed of each env's current episode

    def _obs(self) -> dict[str, np.ndarray]:
        return {"image": self._images.copy(), "goal": self._goals.copy()}

    def _start_episode(self, i: int) -> None:
        env = self.envs[i]
        for _ in range(self.cfg.goal_draws):
            seed = int(self._seed_streams[i].integers(2**31))
            goal = self.goal_source(env, seed)
            if goal.expert_success is not False:
                break
        else:
            raise GoalError(f"{env.task}: the scripted expert failed from {self.cfg.goal_draws} reset seeds in a row")
        obs, _ = env.reset(seed=seed)
        self._images[i], self._goals[i], self.episode_seeds[i] = obs["image"], goal.image, seed

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        base = self.cfg.seed if seed is None else seed
        self._seed_streams = [np.random.default_rng((base, i)) for i in range(self.num_envs)]
        for i in range(self.num_envs):
            self._start_episode(i)
        return self._obs(), {"task": np.array(self.tasks)}

    def step(self, actions: Array):
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu().numpy()
        actions = np.asarray(actions, np.float32)
        if actions.ndim == 2:
            actions = actions[:, None]  # [N,1,A]
        if actions.ndim != 3 or actions.shape[0] != self.num_envs or actions.shape[2] != self.action_dim:
            raise EnvContractError(
                f"actions must be [{self.num_envs},{self.action_dim}] or [{self.num_envs},K,{self.action_dim}], "
                f"got {list(actions.shape)}"
            )
        reward = np.zeros(self.num_envs, np.float32)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        success = np.zeros(self.num_envs, bool)
        for i, env in enumerate(self.envs):
            for action in actions[i]:  # the chunk, in order, until the episode ends
                obs, r, term, trunc, step_info = env.step(action)
                reward[i] += r
                success[i] |= step_info["success"]
                term = term or (self.cfg.terminate_on_success and step_info["success"])
                if term or trunc:
                    break
            self._images[i], terminated[i], truncated[i] = obs["image"], term, trunc
        ended = terminated | truncated
        info: dict[str, Any] = {"success": success}
        if ended.any():
            info["final_obs"], info["_final_obs"] = self._obs(), ended
            for row in np.flatnonzero(ended):
                self._start_episode(int(row))
        return self._obs(), reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        for env in getattr(self, "envs", []):  # also after a failed __init__
            env.close()
