"""Resume points of policy training (BC and PPO): one safetensors file, no pickle.

    save_resume(path, fmt, policy, optimizer, step, config, history, state)
    step, history, state = load_resume(path, fmt, policy, optimizer, config, may_change)

The file holds the policy's weights, the optimizer's state, the step reached, the stats logged so far,
the config it was written with and a JSON `state` of the caller's own (random-generator states, reward
statistics). A resume refuses, with one line naming the option, a config that differs in anything but
the options in `may_change` (step counts and logging periods): the rest shapes what was trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from roboscape_r_ros.rl.policy import ImagePolicy
from roboscape_r_ros.world_model.checkpoint import (
    CheckpointError,
    check_state_dict,
    load_optimizer,
    load_tensors,
    optimizer_tensors,
    save_tensors,
)

Config = dict[str, dict[str, Any]]  # {"bc": to_dict(cfg.bc), "policy": to_dict(policy.cfg), ...}


def save_resume(
    path: Path,
    fmt: str,
    policy: ImagePolicy,
    optimizer: torch.optim.Optimizer,
    step: int,
    config: Config,
    history: list[dict[str, float]],
    state: dict[str, Any],
) -> None:
    optim, groups = optimizer_tensors(optimizer)
    tensors = {f"policy.{k}": v for k, v in policy.state_dict().items()} | {f"optim.{k}": v for k, v in optim.items()}
    meta = {"format": fmt, "step": step, "config": config, "param_groups": groups, "state": state, "history": history}
    save_tensors(path, tensors, meta)


def load_resume(
    path: Path,
    fmt: str,
    policy: ImagePolicy,
    optimizer: torch.optim.Optimizer,
    config: Config,
    may_change: tuple[str, ...],
) -> tuple[int, list[dict[str, float]], dict[str, Any]]:
    """Load weights and optimizer state of an interrupted run: its step, stats and the caller's state."""
    tensors, meta = load_tensors(path, ("format", "step", "config", "param_groups", "state", "history"))
    if meta["format"] != fmt:
        raise CheckpointError(f"{path}: format {meta['format']!r}, expected {fmt!r}")
    for part, now in config.items():
        old = {k: v for k, v in meta["config"].get(part, {}).items() if k not in may_change}
        new = {k: v for k, v in now.items() if k not in may_change}
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        if changed:
            key = changed[0]
            raise CheckpointError(
                f"{path} was written with {part}.{key}={old.get(key)!r}, now {new.get(key)!r}: resume with the same "
                "settings or use another output folder"
            )
    weights = {k.removeprefix("policy."): v for k, v in tensors.items() if k.startswith("policy.")}
    check_state_dict(path, policy, weights)
    policy.load_state_dict(weights)
    optim = {k.removeprefix("optim."): v for k, v in tensors.items() if k.startswith("optim.")}
    load_optimizer(path, optimizer, optim, meta["param_groups"])
    return int(meta["step"]), meta["history"], meta["state"]


def last_stats(path: Path) -> dict[str, float]:
    """The last stats logged before the resume point at ``path`` ({} without one)."""
    if not path.exists():
        return {}
    history = load_tensors(path, ("history",))[1]["history"]
    return history[-1] if history else {}
