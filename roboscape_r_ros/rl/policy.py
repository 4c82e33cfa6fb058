"""Goal-conditioned image policy: the current frame and the goal frame in, a Gaussian over actions out.

    policy = ImagePolicy(PolicyConfig(image_size=64, action_dim=4, chunk=1))
    action, logprob, entropy, value = policy.get_action_and_value(obs)   # obs: {"image", "goal"} uint8 [B,H,W,3]
    policy.save("run/policy.safetensors"); ImagePolicy.load("run/policy.safetensors", action_dim=4)

Architecture: the two frames are stacked into 6 channels (early fusion: the convolutions can compare
the scene with the goal pixel by pixel), then stride-2 convolutions, a linear layer and ReLU. Actor
and critic have separate encoders, so PPO's value loss never disturbs features a BC warm start
learned. A policy decision is a chunk of K actions ([B,K,A]; K=1 by default).

Action distribution: a diagonal Gaussian whose mean is tanh-bounded to (-1, 1) and whose log std is
one learned parameter per action dimension (state independent). Samples are *clipped* to [-1, 1]
when executed, and their log-probabilities are those of the unclipped sample (CleanRL's continuous
PPO): no tanh-Jacobian correction, and BC targets of exactly +-1 (the experts saturate often) stay
finite under the tanh mean. ``clip_actions`` gives the executed action.

A checkpoint is one safetensors file; its metadata holds the format tag and the JSON config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal

from roboscape_r_ros.config import ConfigError, from_dict, option, to_dict
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.files import load_safetensors, save_safetensors

FORMAT = "roboscape_r_ros.policy/1"


class PolicyMismatchError(RoboscapeError, ValueError):
    """A policy used with an env or dataset whose action dimension or image size differs from its own."""


class PolicyCheckpointError(RoboscapeError, OSError):
    """A policy checkpoint that is missing, unreadable, foreign or does not fit its own config."""


@dataclass
class PolicyConfig:
    image_size: int = option(64, help="side of the square frames the policy reads (current and goal)", low=1)
    action_dim: int = option(4, help="action dimensions (Meta-World: dx, dy, dz, gripper), each in [-1, 1]", low=1)
    chunk: int = option(1, help="actions per decision (action chunk K); the env runs them in order", low=1)
    channels: list[int] = option([32, 64, 64], help="widths of the stride-2 3x3 conv stages of each encoder", low=1)
    hidden: int = option(256, help="width of the linear layer after the convolutions", low=1)
    init_log_std: float = option(-1.0, help="initial log std of the Gaussian (exp(-1) = 0.37 in action units)")

    def __post_init__(self) -> None:
        if not self.channels:
            raise ConfigError("policy.channels must list at least one width")
        if self.image_size < 2 ** len(self.channels):
            raise ConfigError(
                f"policy.image_size {self.image_size} is too small for {len(self.channels)} stride-2 stages"
            )


class Encoder(nn.Module):
    """(frame, goal) uint8 [B,H,W,3] each -> features [B,hidden]."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        layers, width = [], 6
        for out in cfg.channels:
            layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.ReLU()]
            width = out
        self.convs = nn.Sequential(*layers)
        side = cfg.image_size
        for _ in cfg.channels:
            side = (side + 1) // 2
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(width * side * side, cfg.hidden), nn.ReLU())

    def forward(self, image: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        x = torch.cat([image, goal], dim=-1)  # [B,H,W,6] uint8
        x = x.permute(0, 3, 1, 2).float() / 255.0 - 0.5  # [B,6,H,W] in [-0.5, 0.5]
        return self.fc(self.convs(x))  # [B,hidden]


class ImagePolicy(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        out = cfg.chunk * cfg.action_dim  # K*A
        self.actor_encoder = Encoder(cfg)
        self.actor_mean = nn.Linear(cfg.hidden, out)
        self.log_std = nn.Parameter(torch.full((out,), cfg.init_log_std))
        self.critic_encoder = Encoder(cfg)
        self.critic = nn.Linear(cfg.hidden, 1)
        nn.init.orthogonal_(self.actor_mean.weight, 0.01)  # near-zero initial mean (CleanRL)
        nn.init.zeros_(self.actor_mean.bias)
        nn.init.orthogonal_(self.critic.weight, 1.0)
        nn.init.zeros_(self.critic.bias)

    @property
    def device(self) -> torch.device:
        return self.log_std.device

    def actor_parameters(self) -> list[nn.Parameter]:
        return [*self.actor_encoder.parameters(), *self.actor_mean.parameters(), self.log_std]

    def critic_parameters(self) -> list[nn.Parameter]:
        return [*self.critic_encoder.parameters(), *self.critic.parameters()]

    # --- the distribution -------------------------------------------------------------------------
    def _check_obs(self, obs: dict[str, torch.Tensor]) -> None:
        size = self.cfg.image_size
        for key in ("image", "goal"):
            shape = tuple(obs[key].shape[1:])
            if shape != (size, size, 3):
                raise PolicyMismatchError(f"policy reads {size}x{size}x3 frames, '{key}' is {list(shape)}")

    def mean(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The deterministic action: mean of the Gaussian, [B,K,A] in (-1, 1)."""
        self._check_obs(obs)
        return self.mean_of(obs["image"], obs["goal"])

    def mean_of(self, image: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """``mean`` of uint8 frames [B,H,W,3] without the shape check (the graph ONNX export traces)."""
        features = self.actor_encoder(image, goal)  # [B,hidden]
        return torch.tanh(self.actor_mean(features)).view(-1, self.cfg.chunk, self.cfg.action_dim)

    def distribution(self, obs: dict[str, torch.Tensor]) -> Normal:
        """Normal over the flattened chunk, batch [B], event [K*A]."""
        mean = self.mean(obs).flatten(1)  # [B,K*A]
        return Normal(mean, self.log_std.clamp(-5.0, 2.0).exp().expand_as(mean))

    def value(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        self._check_obs(obs)
        return self.critic(self.critic_encoder(obs["image"], obs["goal"])).squeeze(-1)  # [B]

    def get_action_and_value(
        self, obs: dict[str, torch.Tensor], action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (or score) an unclipped action [B,K,A]; return it, log-prob [B], entropy [B], value [B]."""
        dist = self.distribution(obs)
        if action is None:
            action = dist.sample().view(-1, self.cfg.chunk, self.cfg.action_dim)
        flat = action.flatten(1)  # [B,K*A]
        return action, dist.log_prob(flat).sum(-1), dist.entropy().sum(-1), self.value(obs)

    @staticmethod
    def clip_actions(action: torch.Tensor) -> torch.Tensor:
        return action.clamp(-1.0, 1.0)

    # --- compatibility and checkpoints ------------------------------------------------------------
    def check_compatible(self, action_dim: int, image_shape: tuple[int, ...], where: str) -> None:
        """Raise PolicyMismatchError unless ``where`` (an env or dataset) has this policy's sizes."""
        if action_dim != self.cfg.action_dim:
            raise PolicyMismatchError(
                f"the policy emits {self.cfg.action_dim}-D actions, {where} takes {action_dim}-D actions"
            )
        size = self.cfg.image_size
        if tuple(image_shape) != (size, size, 3):
            raise PolicyMismatchError(
                f"the policy reads {size}x{size}x3 frames, {where} gives {'x'.join(map(str, image_shape))}"
            )

    def save(self, path: str | Path) -> Path:
        """Write weights + config atomically (temporary file, then rename)."""
        return save_safetensors(path, self.state_dict(), {"format": FORMAT, "config": json.dumps(to_dict(self.cfg))})

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        action_dim: int | None = None,
        image_size: int | None = None,
        device: str | torch.device = "cpu",
    ) -> ImagePolicy:
        """Read a checkpoint; with ``action_dim``/``image_size`` given, refuse a policy of other sizes."""
        path = Path(path)
        tensors, metadata = load_safetensors(path, PolicyCheckpointError, "policy checkpoint")
        cfg = config_from_metadata(path, metadata, FORMAT, "policy checkpoint", action_dim)
        if image_size is not None and image_size != cfg.image_size:
            raise PolicyMismatchError(f"{path}: the policy reads {cfg.image_size}px frames, expected {image_size}px")
        policy = cls(cfg)
        expected = {k: tuple(v.shape) for k, v in policy.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in tensors.items()}
        if expected != found:
            diff = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
            raise PolicyCheckpointError(f"{path}: tensors do not fit the stored config (first: {diff[0]!r})")
        policy.load_state_dict(tensors)
        return policy.to(device)


def config_from_metadata(
    path: Path, metadata: dict[str, str], form: str, what: str, action_dim: int | None
) -> PolicyConfig:
    """The PolicyConfig a policy file's metadata holds, checked against its format and ``action_dim``."""
    if metadata.get("format") != form:
        raise PolicyCheckpointError(f"{path}: not a {what} (format {metadata.get('format')!r})")
    try:
        cfg = from_dict(PolicyConfig, json.loads(metadata["config"]))
    except (KeyError, json.JSONDecodeError, ConfigError) as err:
        raise PolicyCheckpointError(f"{path}: unusable policy config ({err})") from None
    if action_dim is not None and action_dim != cfg.action_dim:
        raise PolicyMismatchError(f"{path}: the policy emits {cfg.action_dim}-D actions, expected {action_dim}-D")
    return cfg


def obs_batch(image: np.ndarray, goal: np.ndarray, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """One unbatched observation [H,W,3] (or a batch [B,H,W,3]) as policy input tensors."""
    image_t = torch.as_tensor(np.asarray(image), device=device)
    goal_t = torch.as_tensor(np.asarray(goal), device=device)
    if image_t.dim() == 3:
        image_t, goal_t = image_t[None], goal_t[None]
    return {"image": image_t, "goal": goal_t}
