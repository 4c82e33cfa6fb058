"""The batched env contract that PPO trains against; the sim, imagination and test toy envs follow it.

A batched env runs ``num_envs`` goal-conditioned episodes side by side (gymnasium VectorEnv style,
``metadata["autoreset_mode"] = AutoresetMode.SAME_STEP``):

    num_envs: int                       N
    action_dim: int                     A (actions lie in [-1, 1])
    image_shape: tuple[int, int, int]   (H, W, 3)
    reset(seed=None) -> (obs, info)
    step(actions) -> (obs, reward, terminated, truncated, info)
    close()

    obs        {"image": uint8 [N,H,W,3], "goal": uint8 [N,H,W,3]}   (more keys are ignored)
    actions    float [N,A], or [N,K,A] for a policy that emits chunks of K actions: the env runs the
               K actions of each row in order, stops a row's chunk where its episode ends (the rest
               of that chunk is dropped), and returns the reward summed over the steps it ran
    reward     float [N]; terminated, truncated bool [N]
    info       optional keys: "success" bool [N] (the task is solved at this step),
               "final_obs" + "_final_obs" (see below)

Arrays may be numpy arrays or torch tensors (on any device): PPO converts with ``torch.as_tensor``,
so an env that keeps tensors on the policy's device costs no copies.

Autoreset (same step): a row whose episode ended (terminated or truncated) is reset inside
``step``; ``obs`` then holds the first observation of its next episode, and
``info["final_obs"]`` the last observation of the episode that ended, in rows where
``info["_final_obs"]`` is true. ``final_obs`` is either a batched obs dict (all rows; only ended
rows are read) or gymnasium's SyncVectorEnv form, an object array of per-env dicts. PPO needs it
only for truncated rows (to bootstrap their value); an env whose episodes never truncate may
leave it out.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from roboscape_r_ros.errors import RoboscapeError

Array = np.ndarray | torch.Tensor
Obs = dict[str, Array]
TensorObs = dict[str, torch.Tensor]
OBS_KEYS = ("image", "goal")


class EnvContractError(RoboscapeError, ValueError):
    """A batched env that breaks the contract in this module's docstring; the message says how."""


class BatchedEnv(Protocol):
    num_envs: int
    action_dim: int
    image_shape: tuple[int, int, int]
    metadata: dict[str, Any]

    def reset(self, *, seed: int | None = None) -> tuple[Obs, dict[str, Any]]: ...

    def step(self, actions: Array) -> tuple[Obs, Array, Array, Array, dict[str, Any]]: ...

    def close(self) -> None: ...


def check_env(env: BatchedEnv) -> None:
    """Raise EnvContractError unless ``env`` declares what PPO needs."""
    for name in ("num_envs", "action_dim", "image_shape"):
        if not hasattr(env, name):
            raise EnvContractError(f"{type(env).__name__} has no attribute '{name}' (see rl/vec.py)")
    mode = getattr(env, "metadata", {}).get("autoreset_mode", AutoresetMode.SAME_STEP)
    if mode != AutoresetMode.SAME_STEP:
        raise EnvContractError(f"{type(env).__name__} autoresets in mode {mode}; PPO needs same-step autoreset")


def obs_to_tensors(obs: Obs, device: torch.device, num_envs: int, image_shape: tuple[int, ...]) -> TensorObs:
    """{"image", "goal"} as uint8 tensors [N,H,W,3] on ``device``; other keys are dropped."""
    out = {}
    for key in OBS_KEYS:
        if key not in obs:
            raise EnvContractError(f"observation lacks '{key}' (has {', '.join(obs) or 'nothing'})")
        value = torch.as_tensor(obs[key], device=device)
        if value.dtype != torch.uint8 or tuple(value.shape) != (num_envs, *image_shape):
            raise EnvContractError(
                f"observation '{key}' must be uint8 {[num_envs, *image_shape]}, got {value.dtype} {list(value.shape)}"
            )
        out[key] = value
    return out


def as_tensor(x: Array, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(x, device=device).to(dtype)


def final_obs(info: dict[str, Any], obs: TensorObs, ended: torch.Tensor) -> TensorObs:
    """The observation each row's last step ended in: ``info["final_obs"]`` where a row ended, else ``obs``."""
    if not bool(ended.any()):
        return obs
    if "final_obs" not in info:
        raise EnvContractError("an episode was truncated but info has no 'final_obs' to bootstrap its value from")
    final = info["final_obs"]
    out = {}
    for key, value in obs.items():
        if isinstance(final, dict):
            rows = torch.as_tensor(final[key], device=value.device)
        else:  # gymnasium SyncVectorEnv: object array of per-env observations (None where not ended)
            rows = value.clone()
            for i in torch.nonzero(ended).flatten().tolist():
                rows[i] = torch.as_tensor(final[i][key], device=value.device)
        out[key] = torch.where(ended.view(-1, *[1] * (value.dim() - 1)), rows.to(value.dtype), value)
    return out
