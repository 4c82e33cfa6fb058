"""The endogenous reward: what the world model's own predictions say about progress.

    r_t = alignment_scale * ((1 - D(x_hat_t, x_goal)) - alignment_offset) + done_bonus * [d_hat_t >= done_threshold]

D is a perceptual distance from perception/ (effnet offline by default, real LPIPS where its weights
are on disk, or 1 - SSIM), d_hat_t the done probability of the predicted frame. Defaults are the
paper's (bonus 10, threshold 0.9, scale 1, no offset). Every output names the distance backend that
made it. The distance runs on the device of the frames' env (perception.device is not used here).

    reward = EndogenousReward(RewardConfig(), num_envs=16, device=wm.device)
    reward.set_goals(rows, goal_frames)          # embeds the goals once; cached per env row
    terms = reward(pred_frames, done_prob)       # RewardTerms: reward, alignment, bonus, distance [N]

`alignment_offset` exists because the paper's per-step term is positive: PPO bootstraps a truncated
episode with V(last obs), so an episode that never finishes is worth ~(1 - D) / (1 - gamma) (about 90
at gamma 0.99) against a one-off bonus of 10 for finishing, and PPO learns to keep the done head from
firing (measured on the tests' toy grid world: imagined success fell from 10% to 0% while returns fell below
random). An offset of 1 makes every step cost D (r = -D + bonus): finishing early then always pays
(the same toy: imagined success 6% -> 93%, real success 0% -> 100%). `alignment_scale` stretches
the dense term: effnet distances between a scene and its goal span only ~0.02-0.05 on 64x64
Meta-World frames, invisible beside the bonus. Defaults stay the paper's; reports say what was used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from roboscape_r_ros.config import option
from roboscape_r_ros.perception.distance import PerceptionConfig, PerceptualDistance, make_distance
from roboscape_r_ros.profiling import label

Embedding = Any  # a tensor [B,...] or a list/tuple of tensors [B,...] (per-layer features)


@dataclass
class RewardConfig:
    perception: PerceptionConfig = option(PerceptionConfig(), help="perceptual distance D of the reward")
    done_bonus: float = option(10.0, help="bonus added when the done probability reaches done_threshold (paper: 10)")
    done_threshold: float = option(
        0.9, help="done probability that earns the bonus (>=) and ends an episode (>)", above=0.0, high=1.0
    )
    alignment_offset: float = option(
        0.0,
        help="subtracted from 1 - D every step; 0 = the paper's reward, 1 = r = -D + bonus (finishing pays; "
        "with 0, PPO's truncation bootstrap makes never finishing worth more than the bonus)",
    )
    alignment_scale: float = option(1.0, help="multiplies the dense term (1 - D - offset); paper: 1")


class RewardTerms(NamedTuple):
    reward: torch.Tensor  # [N] the endogenous reward
    alignment: torch.Tensor  # [N] 1 - D (goal alignment)
    bonus: torch.Tensor  # [N] done_bonus where the done probability reached the threshold, else 0
    distance: torch.Tensor  # [N] D
    backend: str  # the perceptual distance that gave D


def endogenous_reward(
    distance: torch.Tensor,
    done: torch.Tensor,
    *,
    bonus: float = 10.0,
    threshold: float = 0.9,
    offset: float = 0.0,
    scale: float = 1.0,
    fired: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reward, bonus term) from D [N] and done probability [N]:
    scale * ((1 - D) - offset) + bonus * [done >= threshold]; ``fired`` [N] bool, when given, replaces
    [done >= threshold] (e.g. the done signal held for several steps)."""
    fired = done >= threshold if fired is None else fired
    bonus_term = bonus * fired.to(distance.dtype)
    return scale * ((1.0 - distance) - offset) + bonus_term, bonus_term


def take_rows(embedding: Embedding, rows: torch.Tensor) -> Embedding:
    if isinstance(embedding, (list, tuple)):
        return type(embedding)(take_rows(e, rows) for e in embedding)
    return embedding[rows]


def put_rows(cache: Embedding, rows: torch.Tensor, values: Embedding) -> Embedding:
    """Write ``values`` (batch k) into rows ``rows`` [k] of ``cache`` (in place where possible)."""
    if isinstance(cache, (list, tuple)):
        return type(cache)(put_rows(c, rows, v) for c, v in zip(cache, values))
    cache[rows] = values.to(cache.dtype)
    return cache


def expand_rows(embedding: Embedding, n: int) -> Embedding:
    """An embedding of batch 1 repeated to batch n (a real copy, so rows can be replaced one by one)."""
    if isinstance(embedding, (list, tuple)):
        return type(embedding)(expand_rows(e, n) for e in embedding)
    return embedding.expand(n, *embedding.shape[1:]).clone()


class EndogenousReward:
    """Batched reward for ``num_envs`` rows, each with its own goal whose embedding is cached."""

    def __init__(
        self,
        cfg: RewardConfig,
        num_envs: int,
        device: torch.device | str = "cpu",
        distance: PerceptualDistance | None = None,
    ):
        self.cfg, self.num_envs = cfg, num_envs
        self.device = torch.device(device)
        if distance is None:
            distance = make_distance(dataclasses.replace(cfg.perception, device=str(self.device)))
        self.distance = distance
        self.backend: str = distance.name
        self._goals: Embedding | None = None  # per-row goal embeddings

    def _combine(
        self, distance: torch.Tensor, done, fired: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        done = torch.as_tensor(done, device=distance.device, dtype=torch.float32)
        return endogenous_reward(
            distance,
            done,
            bonus=self.cfg.done_bonus,
            threshold=self.cfg.done_threshold,
            offset=self.cfg.alignment_offset,
            scale=self.cfg.alignment_scale,
            fired=fired,
        )

    @torch.no_grad()
    def set_goals(self, rows: torch.Tensor | np.ndarray | slice | None, goals: torch.Tensor | np.ndarray) -> None:
        """Embed goal frames uint8 [k,H,W,3] (or [1,H,W,3] for all of ``rows``) once; rows [k] (None = all)."""
        goals = torch.as_tensor(goals, device=self.device)
        if rows is None:
            rows = torch.arange(self.num_envs, device=self.device)
        rows = torch.as_tensor(rows, device=self.device, dtype=torch.long).flatten()
        embedding = self.distance.embed(goals)
        if goals.shape[0] == 1 and len(rows) != 1:
            embedding = expand_rows(embedding, len(rows))
        if self._goals is None:
            if len(rows) != self.num_envs:
                raise ValueError(f"the first set_goals must set all {self.num_envs} rows, got {len(rows)}")
            first = torch.zeros(1, dtype=torch.long, device=self.device)
            self._goals = expand_rows(take_rows(embedding, first), self.num_envs)
        self._goals = put_rows(self._goals, rows, embedding)

    @torch.no_grad()
    def __call__(
        self,
        frames: torch.Tensor | np.ndarray,
        done: torch.Tensor | np.ndarray,
        rows: torch.Tensor | None = None,
        fired: torch.Tensor | None = None,
    ) -> RewardTerms:
        """Reward of frames uint8 [N,H,W,3] (or of the env rows ``rows`` [k]) with done probabilities [N];
        ``fired`` [N] bool: where the bonus is paid, when not simply where done reaches the threshold."""
        if self._goals is None:
            raise RuntimeError("EndogenousReward: set_goals before computing rewards")
        goals = self._goals if rows is None else take_rows(self._goals, rows)
        with label("reward.perceptual"):
            distance = self.distance.compare(self.distance.embed(frames), goals).float()
        reward, bonus = self._combine(distance, done, fired)
        return RewardTerms(reward, 1.0 - distance, bonus, distance, self.backend)

    @torch.no_grad()
    def score(
        self, frames: torch.Tensor | np.ndarray, goals: torch.Tensor | np.ndarray, done: torch.Tensor | np.ndarray
    ) -> RewardTerms:
        """Stateless: reward of frames [B,...] against goals [B or 1,...] (no cache), e.g. on real frames."""
        distance = self.distance(frames, goals).float()
        reward, bonus = self._combine(distance, done)
        return RewardTerms(reward, 1.0 - distance, bonus, distance, self.backend)
