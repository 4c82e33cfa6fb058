"""Goal (text-conditioned) world model: imagines how a task ends from its first frame.

The same Dynamics class as the action model, conditioned on the instruction instead of actions:
an offline word tokenizer (crc32 hash buckets, no vocabulary file, no download) and a learned
embedding give one cross-attention token per word and a pooled FiLM vector, identical for every
frame. The goal frame is the first imagined frame whose done probability reaches the threshold
(0.9 in the paper), or the last imagined frame when done never fires (`GoalImagination.fired`).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import torch
from torch import nn

from roboscape_r_ros.world_model.conditioning import Condition
from roboscape_r_ros.world_model.config import WorldModelConfig
from roboscape_r_ros.world_model.dynamics import Dynamics
from roboscape_r_ros.world_model.tokenizer import Tokenizer, to_uint8


def tokenize_instructions(instructions: list[str], buckets: int, max_words: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Strings -> word ids [B,1+max_words] (id 0 = a start token every instruction has) and valid mask."""
    ids = torch.zeros(len(instructions), 1 + max_words, dtype=torch.long)
    valid = torch.zeros_like(ids, dtype=torch.bool)
    valid[:, 0] = True
    for i, text in enumerate(instructions):
        words = re.findall(r"[a-z0-9]+", text.lower())[:max_words]
        for j, word in enumerate(words, start=1):
            ids[i, j] = 1 + zlib.crc32(word.encode()) % (buckets - 1)
            valid[i, j] = True
    return ids, valid


class TextEncoder(nn.Module):
    def __init__(self, buckets: int, max_words: int, dim: int):
        super().__init__()
        self.buckets, self.max_words = buckets, max_words
        self.embed = nn.Embedding(buckets, dim)
        self.pos = nn.Parameter(torch.randn(1 + max_words, dim) * 0.02)
        self.vector_mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, instructions: list[str], frames: int) -> Condition:
        """B instructions -> the same Condition for each of `frames` frames."""
        ids, valid = tokenize_instructions(instructions, self.buckets, self.max_words)
        ids, valid = ids.to(self.pos.device), valid.to(self.pos.device)
        tokens = self.embed(ids) + self.pos  # [B,W,D]
        pooled = (tokens * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)  # [B,D]
        B, W, D = tokens.shape
        vector = self.vector_mlp(pooled)
        return Condition(tokens[:, None].expand(B, frames, W, D), vector[:, None].expand(B, frames, D), valid)


@dataclass
class GoalImagination:
    goal: torch.Tensor  # uint8 [B,H,W,3] goal frame
    goal_step: torch.Tensor  # int64 [B] index of the goal frame in `frames`
    fired: torch.Tensor  # bool [B] done reached the threshold (else the goal is the last frame)
    frames: torch.Tensor  # uint8 [B,S+1,H,W,3] imagined episode, first frame included
    done: torch.Tensor  # float [B,S+1] done probability of each frame


class GoalModel(nn.Module):
    def __init__(self, cfg: WorldModelConfig, vocab_size: int, tokens_per_frame: int):
        super().__init__()
        self.text = TextEncoder(cfg.text.buckets, cfg.text.max_words, cfg.dynamics.dim)
        self.dynamics = Dynamics(cfg.dynamics, vocab_size, tokens_per_frame, cfg.context_length)
        self.threshold = cfg.done_threshold

    def loss(self, tokens: torch.Tensor, instructions: list[str], done: torch.Tensor):
        """tokens [B,T,N], one instruction per sequence, done labels [B,T]."""
        return self.dynamics.loss(tokens, self.text(instructions, tokens.shape[1]), done)

    @torch.no_grad()
    def imagine(self, tokenizer: Tokenizer, first: torch.Tensor, instructions: list[str], max_steps: int):
        """Roll out from first frames uint8 [B,H,W,3] until every episode's done fires or max_steps."""
        ids = tokenizer.encode(first)  # [B,h,w]
        cond = self.text(instructions, 1)
        state, done_logit = self.dynamics.prefill(ids.flatten(1)[:, None], cond)
        tokens, done = [ids.flatten(1)], [torch.sigmoid(done_logit[:, 0])]
        fired = done[0] >= self.threshold
        for _ in range(max_steps):
            if fired.all():
                break
            state, next_ids, done_logit, _ = self.dynamics.predict_next(state, cond)
            tokens.append(next_ids)
            done.append(torch.sigmoid(done_logit))
            fired |= done[-1] >= self.threshold
        done_t = torch.stack(done, 1)  # [B,S+1]
        frames = to_uint8(tokenizer.decode(torch.stack(tokens, 1).unflatten(-1, ids.shape[1:])))  # [B,S+1,H,W,3]
        frames[:, 0] = first
        goal_step = torch.where(fired, (done_t >= self.threshold).float().argmax(1), done_t.shape[1] - 1)
        goal = frames[torch.arange(len(frames)), goal_step]
        return GoalImagination(goal, goal_step, fired, frames, done_t)
