"""Spatial-temporal transformer over frame tokens, MaskGIT-trained, with a done head.

Every block: spatial self-attention within a frame -> causal temporal attention per token position
(RoPE over time) -> cross-attention to the frame's condition tokens (one per action dimension, or
the instruction's words) -> MLP; the condition vector also FiLM-modulates the spatial-attention and
MLP inputs. Frame t is conditioned on what led to it (a_{t-1}); see conditioning.py.

Training is two-stream ("teacher forcing with a masked copy"): the clean frames 0..T-1 attend
causally to each other; a masked copy of frames 1..T-1 (MaskGIT cosine-schedule mask) attends to
the clean frames strictly before it and to itself. So all T-1 next-frame predictions train in one
pass, and each one sees exactly what inference sees: T-1 clean past frames plus the partly decoded
frame. The done head reads the mean-pooled clean features of a frame; at inference the decoded
frame gets that clean pass anyway, to fill the KV cache. With `history_dropout` > 0 a share of the
windows trains without history (`two_stream_mask`): each frame is then predicted from the one before
it and the action alone, which an expert's smooth motion otherwise lets the model ignore.

Imagination keeps a KV cache of the last C = context_length-1 clean frames (keys stored before
RoPE, rotated by slot at use, so rolling the window needs no recomputation). Once the window has
rolled, the oldest cached frames carry context older than the window: the usual streaming
approximation; until then the cache is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from roboscape_r_ros.distributed import draw
from roboscape_r_ros.profiling import label
from roboscape_r_ros.world_model.conditioning import Condition
from roboscape_r_ros.world_model.config import DynamicsConfig


def rope(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding. x [S,H,T,hd], pos [T] -> [S,H,T,hd]."""
    half = x.shape[-1] // 2
    freqs = 10000.0 ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = pos.float()[:, None] * freqs  # [T,hd/2]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None, past=None) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd), masked) v: queries q [S,H,F,hd] over keys/values k, v [S,H,F,hd], after the
    cached `past` (keys, values) [S,H,P,hd] when given (then F = 1); mask [*,F,P+F] bool (True: attend).

    Fused SDPA, except where the profile (bench/profile_world_model.py) found it slower: over a cache (one
    query against a few keys per sequence: elementwise, 3x faster than SDPA or batched 1-row matmuls, and no
    concatenated copy of the cache) and in bf16 on a CPU (two matmuls: about 2x faster at these sizes)."""
    scale = q.shape[-1] ** -0.5
    if past is not None:
        scores = torch.cat([(q * past[0]).sum(-1, keepdim=True), (q * k).sum(-1, keepdim=True)], 2)  # [S,H,P+1,1]
        if mask is not None:
            scores = scores.masked_fill(~mask.transpose(-1, -2), float("-inf"))
        weights = (scores * scale).softmax(2)
        cached = past[1].shape[2]
        return (weights[:, :, :cached] * past[1]).sum(2, keepdim=True) + weights[:, :, cached:] * v
    if q.dtype == torch.bfloat16 and q.device.type == "cpu":
        scores = (q @ k.transpose(-1, -2)) * scale  # [S,H,F,F]
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.float().softmax(-1).to(v.dtype) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class Attention(nn.Module):
    """Multi-head attention of x [S,L,D] over itself or over `context` [S,M,D]."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # [S,L,D] -> [S,H,L,hd]

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        k, v = self.kv(x if context is None else context).chunk(2, -1)
        out = attend(self.split(self.q(x)), self.split(k), self.split(v), mask)
        return self.out(out.transpose(1, 2).flatten(-2))


class TemporalAttention(Attention):
    """Attention over time per token position, with RoPE and optional cached past keys/values."""

    def past(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached keys (before RoPE) and values [S,P,D] of P past frames at positions 0..P-1 -> keys rotated to
        those positions and values, both [S,H,P,hd]: what every pass of one imagine step attends to."""
        return rope(self.split(k), torch.arange(k.shape[1], device=k.device)), self.split(v)

    def forward(self, x, pos, mask, past=None):
        """x [S,F,D] at positions pos [F]; mask [*,F,P+F] bool; past from `past` ([S,H,P,hd] each).

        Returns the output [S,F,D] and x's own (k, v) [S,F,D] (keys before RoPE) for a cache.
        """
        q = self.q(x)
        k, v = self.kv(x).chunk(2, -1)
        new_kv = (k, v)
        if past is not None:  # attention over a few cached frames: cheaper in float32 than in bf16 on a CPU
            q, k, v = q.float(), k.float(), v.float()
        out = attend(rope(self.split(q), pos), rope(self.split(k), pos), self.split(v), mask, past)
        return self.out(out.transpose(1, 2).flatten(-2)), new_kv


class Block(nn.Module):
    def __init__(self, cfg: DynamicsConfig):
        super().__init__()
        d = cfg.dim
        self.norm_s, self.spatial = nn.LayerNorm(d, elementwise_affine=False), Attention(d, cfg.heads)
        self.norm_t, self.temporal = nn.LayerNorm(d), TemporalAttention(d, cfg.heads)
        self.norm_c, self.cross = nn.LayerNorm(d), Attention(d, cfg.heads)
        self.norm_m = nn.LayerNorm(d, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp_ratio * d), nn.GELU(), nn.Linear(cfg.mlp_ratio * d, d))
        self.film = nn.Linear(d, 4 * d)  # condition vector -> shift/scale of the spatial and MLP inputs
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x, cond: Condition, pos, mask, past=None):
        """x [B,F,N,D]; cond for F frames; temporal pos/mask/past as in TemporalAttention."""
        B, F_, N, D = x.shape
        shift_s, scale_s, shift_m, scale_m = self.film(cond.vector)[:, :, None].chunk(4, -1)  # [B,F,1,D] each
        h = self.norm_s(x) * (1 + scale_s) + shift_s
        with label("dynamics.attention.spatial"):
            x = x + self.spatial(h.reshape(B * F_, N, D)).reshape(B, F_, N, D)
        h = self.norm_t(x).transpose(1, 2).reshape(B * N, F_, D)  # one sequence per token position
        with label("dynamics.attention.temporal"):
            out, kv = self.temporal(h, pos, mask, past)
        x = x + out.reshape(B, N, F_, D).transpose(1, 2)
        context = cond.tokens.reshape(B * F_, -1, D)  # [B*F,C,D]
        valid = cond.valid[:, None, None, None, :].expand(B, F_, 1, 1, -1).reshape(B * F_, 1, 1, -1)
        with label("dynamics.attention.cross"):
            x = x + self.cross(self.norm_c(x).reshape(B * F_, N, D), context, valid).reshape(B, F_, N, D)
        with label("dynamics.mlp"):
            x = x + self.mlp(self.norm_m(x) * (1 + scale_m) + shift_m)
        return x, kv


def two_stream_mask(T: int, without_history: torch.Tensor) -> torch.Tensor:
    """Temporal attention mask [B,2T-1,2T-1] (query x key) of training's clean frames 0..T-1 followed by
    the masked copies of frames 1..T-1. A masked frame sees the clean frames strictly before it and itself
    (never the clean copy of its target); a clean frame sees itself and the clean frames before it. Windows
    flagged in ``without_history`` [B] (bool) see no history: a masked frame sees itself and the clean
    frame just before it, a clean frame only itself."""
    device = without_history.device
    pos = torch.cat([torch.arange(T, device=device), torch.arange(1, T, device=device)])  # [2T-1]
    is_clean = torch.arange(2 * T - 1, device=device) < T
    itself = torch.eye(2 * T - 1, dtype=torch.bool, device=device)
    causal = is_clean[None, :] & (pos[None, :] < pos[:, None]) | itself
    just_before = is_clean[None, :] & ~is_clean[:, None] & (pos[None, :] == pos[:, None] - 1) | itself
    return torch.where(without_history[:, None, None], just_before, causal)


@dataclass
class State:
    """Imagination state: temporal keys/values of the last C clean frames, right-aligned."""

    kv: torch.Tensor  # float32 [L,2,B,N,C,D], under any autocast
    valid: torch.Tensor  # [B,C] bool, False for empty slots (context shorter than C)

    def push(self, kv: torch.Tensor) -> State:
        """Append one frame's kv [L,2,B,N,1,D], dropping the oldest."""
        ones = torch.ones_like(self.valid[:, :1])
        return State(torch.cat([self.kv[..., 1:, :], kv], -2), torch.cat([self.valid[:, 1:], ones], 1))

    def replace(self, index: torch.Tensor, other: State) -> State:
        """Rows `index` [k] replaced by `other` (batch k), e.g. to reset finished environments."""
        kv, valid = self.kv.clone(), self.valid.clone()
        kv[:, :, index], valid[index] = other.kv, other.valid
        return State(kv, valid)


class Dynamics(nn.Module):
    def __init__(self, cfg: DynamicsConfig, vocab_size: int, tokens_per_frame: int, context_length: int):
        super().__init__()
        if cfg.dim % cfg.heads or (cfg.dim // cfg.heads) % 2:
            raise ValueError(f"dynamics.dim={cfg.dim} must split into {cfg.heads} heads of even width")
        self.cfg = cfg
        self.capacity = context_length - 1  # cached past frames
        self.mask_id = vocab_size
        self.embed = nn.Embedding(vocab_size + 1, cfg.dim)  # last id = [MASK]
        self.spatial_pos = nn.Parameter(torch.randn(tokens_per_frame, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, vocab_size)
        self.done_head = nn.Sequential(nn.Linear(cfg.dim, cfg.done_hidden), nn.GELU(), nn.Linear(cfg.done_hidden, 1))

    def _run(self, tokens, cond: Condition, pos, mask, past=None):
        """tokens [B,F,N] at positions pos [F] -> features [B,F,N,D] and per-layer (k, v) [B*N,F,D] of these
        frames; past: per layer, the cached frames as `TemporalAttention.past` gives them."""
        with label("dynamics.other"):  # what the blocks' own labels leave: embeddings, FiLM, norms
            x = self.embed(tokens) + self.spatial_pos
            kvs = []
            for i, block in enumerate(self.blocks):
                x, kv = block(x, cond, pos, mask, None if past is None else past[i])
                kvs.append(kv)
            return self.norm(x), kvs

    def _done_logit(self, features: torch.Tensor) -> torch.Tensor:
        with label("dynamics.done_head"):
            return self.done_head(features.mean(-2)).squeeze(-1).float()  # [B,F,N,D] -> [B,F]

    def loss(
        self, tokens: torch.Tensor, cond: Condition, done: torch.Tensor, labelled: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """tokens [B,T,N], cond for T frames, done labels [B,T] -> token CE + w * MSE(done). The done
        MSE is over the windows whose episode is ``labelled`` (bool [B]; None: all), 0 when none is."""
        B, T, N = tokens.shape
        target = tokens[:, 1:]  # [B,T-1,N]
        # random draws through `draw`: under torchrun each rank takes its rows of the global batch's draw
        ratio = torch.cos(math.pi / 2 * draw(torch.rand, (B, T - 1, 1), device=tokens.device))  # MaskGIT cosine
        n_masked = (ratio * N).ceil().clamp(min=1)
        masked = draw(torch.rand, (B, T - 1, N), device=tokens.device).argsort(-1).argsort(-1) < n_masked  # [B,T-1,N]
        stream = torch.cat([tokens, torch.where(masked, self.mask_id, target)], 1)  # [B,2T-1,N]
        both = Condition(
            torch.cat([cond.tokens, cond.tokens[:, 1:]], 1),  # clean stream, then masked stream
            torch.cat([cond.vector, cond.vector[:, 1:]], 1),
            cond.valid,
        )
        t = torch.arange(T, device=tokens.device)
        pos = torch.cat([t, t[1:]])  # [2T-1]
        if self.cfg.history_dropout > 0:
            dropped = draw(torch.rand, (B,), device=tokens.device) < self.cfg.history_dropout
            mask = two_stream_mask(T, dropped)  # [B,2T-1,2T-1], one per window
            mask = mask[:, None, None].expand(B, N, 1, 2 * T - 1, 2 * T - 1).reshape(B * N, 1, 2 * T - 1, 2 * T - 1)
        else:  # one mask for every window, and no random draw: the default path as before the option
            mask = two_stream_mask(T, torch.zeros(1, dtype=torch.bool, device=tokens.device))[0]
        features, _ = self._run(stream, both, pos, mask)
        with label("dynamics.token_head"):
            logits = self.head(features[:, T:][masked]).float()  # [M,V] at the masked positions only
            changed = (target != tokens[:, :-1])[masked]  # [M] tokens that differ from the previous frame
            weight = 1 + (self.cfg.changed_token_weight - 1) * changed.float()
            ce = (F.cross_entropy(logits, target[masked], reduction="none") * weight).sum() / weight.sum()
        done_error = (torch.sigmoid(self._done_logit(features[:, :T])) - done) ** 2  # [B,T]
        if labelled is None:
            done_mse = done_error.mean()
        else:
            weight = labelled.float()[:, None].expand_as(done_error)
            done_mse = (done_error * weight).sum() / weight.sum().clamp(min=1)
        loss = ce + self.cfg.done_weight * done_mse
        hit = logits.argmax(-1) == target[masked]
        metrics = {
            "loss": loss.item(),
            "token_ce": ce.item(),
            "done_mse": done_mse.item(),
            "token_acc": hit.float().mean().item(),
            "changed_acc": hit[changed].float().mean().item() if changed.any() else float("nan"),
        }
        return loss, metrics

    def encode(self, tokens: torch.Tensor, cond: Condition) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean causal pass over tokens [B,T,N] -> kv [L,2,B,N,T,D] and done logits [B,T]."""
        B, T, N = tokens.shape
        pos = torch.arange(T, device=tokens.device)
        mask = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
        features, kvs = self._run(tokens, cond, pos, mask)
        return self._cache(kvs, B, N), self._done_logit(features)

    def prefill(self, tokens: torch.Tensor, cond: Condition) -> tuple[State, torch.Tensor]:
        """Context tokens [B,T,N] (1 <= T <= C) -> State and done logits [B,T]."""
        B, T, _ = tokens.shape
        if not 1 <= T <= self.capacity:
            raise ValueError(f"context of {T} frames; this model holds 1..{self.capacity} past frames")
        kv, done_logits = self.encode(tokens, cond)
        pad = self.capacity - T
        kv = F.pad(kv, (0, 0, pad, 0))  # right-align in C slots
        valid = torch.arange(self.capacity, device=tokens.device).expand(B, -1) >= pad
        return State(kv, valid), done_logits

    @staticmethod
    def _cache(kvs: list[tuple[torch.Tensor, torch.Tensor]], B: int, N: int) -> torch.Tensor:
        """Per-layer (k, v) [B*N,F,D] -> the cache's layout, float32 [L,2,B,N,F,D] under any autocast."""
        return torch.stack([torch.stack(kv) for kv in kvs]).unflatten(2, (B, N)).float()

    def _past(self, state: State) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The cache as every pass of one step reads it: per layer, keys rotated to their slots and values."""
        past = []
        for i, block in enumerate(self.blocks):
            assert isinstance(block, Block)  # (nn.ModuleList yields nn.Module)
            past.append(block.temporal.past(state.kv[i, 0].flatten(0, 1), state.kv[i, 1].flatten(0, 1)))
        return past

    def _step_pass(self, tokens, cond: Condition, state: State, past: list):
        """One frame tokens [B,N] against the cache (`past` = _past(state)) -> features [B,1,N,D], kv [L,2,B,N,1,D]."""
        B, N = tokens.shape
        C = self.capacity
        pos = torch.tensor([C], device=tokens.device)
        valid = torch.cat([state.valid, torch.ones_like(state.valid[:, :1])], 1)  # [B,C+1]
        mask = valid[:, None, None, :].expand(B, N, 1, C + 1).reshape(B * N, 1, 1, C + 1)
        features, kvs = self._run(tokens[:, None], cond, pos, mask, past)
        return features, self._cache(kvs, B, N)

    def predict_next(self, state: State, cond: Condition) -> tuple[State, torch.Tensor, torch.Tensor, torch.Tensor]:
        """MaskGIT-decode the next frame (cond for 1 frame) -> new state, tokens [B,N], done logit [B] and
        the frame's token entropy [B]: the mean over its tokens of the entropy of the distribution each
        token was committed from, divided by log(vocab) (0: certain, 1: uniform)."""
        B, N = state.kv.shape[2], state.kv.shape[3]
        tokens = torch.full((B, N), self.mask_id, dtype=torch.long, device=state.kv.device)
        entropy = torch.zeros((B, N), device=state.kv.device)
        with label("dynamics.attention.temporal"):
            past = self._past(state)
        for k in range(self.cfg.decode_steps):
            with label(f"maskgit.iteration{k + 1}"):
                tokens, entropy = self._unmask(tokens, entropy, cond, state, past, k)
        with label("maskgit.final_pass"):  # the decoded frame's clean pass: the cache and the done head
            features, kv = self._step_pass(tokens, cond, state, past)
            uncertainty = entropy.mean(-1) / math.log(self.head.out_features)
            return state.push(kv), tokens, self._done_logit(features)[:, 0], uncertainty

    def _unmask(
        self, tokens: torch.Tensor, entropy: torch.Tensor, cond: Condition, state: State, past: list, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MaskGIT iteration k: the most confident of the still masked tokens [B,N] take their predicted ids;
        ``entropy`` [B,N] takes the entropy of the distributions they were committed from."""
        B, N = tokens.shape
        K = self.cfg.decode_steps
        features, _ = self._step_pass(tokens, cond, state, past)
        with label("dynamics.token_head"):
            logits = self.head(features[:, 0]).float() / (self.cfg.temperature or 1.0)  # [B,N,V]
            probs = torch.softmax(logits, -1)
            if self.cfg.temperature > 0:
                sample = torch.multinomial(probs.flatten(0, 1), 1).view(B, N)
                confidence = probs.gather(-1, sample[..., None])[..., 0]
            else:
                confidence, sample = probs.max(-1)
            is_masked = tokens == self.mask_id
            stay_masked = math.floor(N * math.cos(math.pi / 2 * (k + 1) / K))  # cosine schedule, 0 at k=K-1
            rank = torch.where(is_masked, confidence, math.inf).argsort(-1).argsort(-1)  # least confident first
            commit = is_masked & (rank >= stay_masked)
            committed_entropy = -(probs * torch.log_softmax(logits, -1)).sum(-1)
            return torch.where(commit, sample, tokens), torch.where(commit, committed_entropy, entropy)
