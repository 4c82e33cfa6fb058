"""What a frame is conditioned on: cross-attention tokens plus a FiLM vector, per frame.

The action world model conditions frame t on the action that led to it, a_{t-1} (frame 0 of a
window gets a learned "no action"); the goal model conditions every frame on the instruction
(goal_model.TextEncoder). The dynamics never knows which of the two it is given.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Condition(NamedTuple):
    tokens: torch.Tensor  # [B,T,C,D] cross-attention tokens of each frame
    vector: torch.Tensor  # [B,T,D] FiLM vector of each frame
    valid: torch.Tensor  # [B,C] bool, False for padding tokens


class ActionEncoder(nn.Module):
    """One token per action dimension (value-scaled learned vector + dimension identity) and an MLP vector."""

    def __init__(self, action_dim: int, dim: int):
        super().__init__()
        self.value = nn.Parameter(torch.randn(action_dim, dim))
        self.identity = nn.Parameter(torch.randn(action_dim, dim) * 0.02)
        self.token_proj = nn.Linear(dim, dim)
        self.vector_mlp = nn.Sequential(nn.Linear(action_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.none_tokens = nn.Parameter(torch.randn(action_dim, dim) * 0.02)
        self.none_vector = nn.Parameter(torch.zeros(dim))

    def _embed(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """actions [B,T,A] -> tokens [B,T,A,D], vector [B,T,D]."""
        tokens = self.token_proj(F.gelu(actions[..., None] * self.value + self.identity))
        return tokens, self.vector_mlp(actions)

    def context(self, actions: torch.Tensor) -> Condition:
        """Actions between T context frames [B,T-1,A] -> Condition for the T frames."""
        B, A = actions.shape[0], actions.shape[-1]
        tokens, vector = self._embed(actions)
        tokens = torch.cat([self.none_tokens.expand(B, 1, -1, -1), tokens], 1)
        vector = torch.cat([self.none_vector.expand(B, 1, -1), vector], 1)
        return Condition(tokens, vector, torch.ones(B, A, dtype=torch.bool, device=actions.device))

    def next(self, actions: torch.Tensor) -> Condition:
        """Action a_t [B,A] -> Condition of the frame it leads to (1 frame)."""
        tokens, vector = self._embed(actions[:, None])
        return Condition(tokens, vector, torch.ones(actions.shape, dtype=torch.bool, device=actions.device))
