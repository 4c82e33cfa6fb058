"""A point mass rendered to small images: a learnable toy that follows the batched env contract (rl/vec.py).

The point starts anywhere in [-1, 1]^2 and must reach a goal drawn the same way. The frame shows the
point as a red Gaussian blob, the goal frame shows the point where it should end (like a demo's last frame).
Action [2] in [-1, 1] moves the point by ``speed`` per unit; reward = -distance to the goal; the
episode terminates when the point is within ``radius`` of the goal (success) and is truncated after
``max_steps``. All state lives in torch tensors on ``device`` (the torch-native path): tests of PPO
run in seconds and an optimal policy's return is several times better than a random one's.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium.vector import AutoresetMode

from roboscape_r_ros.rl.vec import Array, EnvContractError


class PointMassEnv:
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
    action_dim = 2

    def __init__(
        self,
        num_envs: int = 8,
        image_size: int = 16,
        max_steps: int = 16,
        speed: float = 0.25,
        radius: float = 0.15,
        blob_sigma: float = 0.35,
        device: str = "cpu",
        seed: int = 0,
    ):
        self.num_envs, self.max_steps, self.speed, self.radius = num_envs, max_steps, speed, radius
        self.image_shape = (image_size, image_size, 3)
        self.device = torch.device(device)
        self.generator = torch.Generator(self.device).manual_seed(seed)
        axis = torch.linspace(-1.0, 1.0, image_size, device=self.device)
        self._yy, self._xx = torch.meshgrid(axis, axis, indexing="ij")  # [S,S]
        self.blob_sigma = blob_sigma  # in [-1, 1] units; blobs of ~1 pixel are much harder to learn from
        self.position = torch.zeros(num_envs, 2, device=self.device)
        self.goal = torch.zeros(num_envs, 2, device=self.device)
        self.steps = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._goal_image = torch.zeros(num_envs, *self.image_shape, dtype=torch.uint8, device=self.device)

    def render(self, points: torch.Tensor) -> torch.Tensor:
        """[N,2] positions -> uint8 [N,S,S,3] frames with a red blob at each point."""
        dx = self._xx - points[:, 0, None, None]  # [N,S,S]
        dy = self._yy - points[:, 1, None, None]
        blob = torch.exp(-(dx**2 + dy**2) / (2 * self.blob_sigma**2))
        frames = torch.zeros(len(points), *self.image_shape, device=self.device)
        frames[..., 0] = 255 * blob
        frames[..., 2] = 40  # a dim blue background, so frames are never one colour
        return frames.to(torch.uint8)

    def _draw(self, rows: torch.Tensor) -> None:
        n = int(rows.sum())
        self.position[rows] = torch.rand(n, 2, generator=self.generator, device=self.device) * 2 - 1
        self.goal[rows] = torch.rand(n, 2, generator=self.generator, device=self.device) * 2 - 1
        self.steps[rows] = 0
        self._goal_image[rows] = self.render(self.goal[rows])

    def _obs(self) -> dict[str, torch.Tensor]:
        return {"image": self.render(self.position), "goal": self._goal_image.clone()}

    def reset(self, *, seed: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if seed is not None:
            self.generator.manual_seed(seed)
        self._draw(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self._obs(), {}

    def step(self, actions: Array):
        actions = torch.as_tensor(actions, device=self.device, dtype=torch.float32)
        if actions.dim() == 2:
            actions = actions[:, None]  # [N,1,A]
        if actions.shape[0] != self.num_envs or actions.shape[2] != self.action_dim:
            raise EnvContractError(f"actions must be [{self.num_envs},K,{self.action_dim}], got {list(actions.shape)}")
        reward = torch.zeros(self.num_envs, device=self.device)
        terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        truncated = torch.zeros_like(terminated)
        for k in range(actions.shape[1]):  # a row's chunk stops where its episode ends
            active = ~(terminated | truncated)
            move = self.speed * actions[:, k].clamp(-1, 1) * active[:, None]
            self.position = (self.position + move).clamp(-1, 1)
            self.steps += active.long()
            distance = (self.position - self.goal).norm(dim=1)
            reward += torch.where(active, -distance, 0.0)
            terminated |= active & (distance < self.radius)
            truncated |= active & ~terminated & (self.steps >= self.max_steps)
        ended = terminated | truncated
        info = {"success": terminated.clone(), "final_obs": self._obs(), "_final_obs": ended}
        if ended.any():
            self._draw(ended)
        return self._obs(), reward, terminated, truncated, info

    def close(self) -> None:
        pass
