"""WorldModel: the one API that imagination, the reward and the nodes use.

    wm = WorldModel.from_checkpoint("run/world_model.safetensors")
    wm.configure(InferenceConfig(decode_steps=1, precision="bfloat16"))  # optional: faster imagination
    state = wm.encode_context(frames, actions)          # uint8 [B,T,H,W,3], float [B,T-1,A]
    state, frame, done = wm.step(state, action)          # float [B,A] -> uint8 [B,H,W,3], [B]
    goals = wm.imagine_goal(first_frames, instructions)  # GoalImagination

Inputs may be numpy arrays or torch tensors; outputs are torch tensors on the model's device.
A checkpoint is one safetensors file whose metadata holds the JSON config, written atomically.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from roboscape_r_ros.config import ConfigError, from_dict
from roboscape_r_ros.world_model.checkpoint import CheckpointError, check_state_dict, load_tensors, save_tensors
from roboscape_r_ros.world_model.conditioning import ActionEncoder
from roboscape_r_ros.world_model.config import InferenceConfig, WorldModelConfig
from roboscape_r_ros.world_model.dynamics import Dynamics, State
from roboscape_r_ros.world_model.goal_model import GoalImagination, GoalModel
from roboscape_r_ros.world_model.tokenizer import Tokenizer, hold_static_tokens, to_uint8

FORMAT = "roboscape_r_ros.world_model/1"


class Imagined(NamedTuple):
    state: State
    frame: torch.Tensor  # uint8 [B,H,W,3]
    done: torch.Tensor  # done probability [B]
    token_entropy: torch.Tensor  # [B] mean entropy of the frame's tokens / log(vocab)


class WorldModel(nn.Module):
    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        if cfg.image_size % 8:
            raise ValueError(f"image_size={cfg.image_size} must be a multiple of 8 (the tokenizer downsamples 8x)")
        self.cfg = cfg
        self.tokenizer = Tokenizer(cfg.tokenizer)
        self.grid = cfg.image_size // 8
        vocab, n_tokens = self.tokenizer.vocab_size, self.grid**2
        self.actions = ActionEncoder(cfg.action_dim, cfg.dynamics.dim)
        self.dynamics = Dynamics(cfg.dynamics, vocab, n_tokens, cfg.context_length)
        self.goal = GoalModel(cfg, vocab, n_tokens)
        self.precision = "float32"

    def configure(self, inference: InferenceConfig) -> None:
        """Imagine with `inference`'s MaskGIT iteration count (both world models) and precision."""
        if inference.decode_steps:
            self.cfg.dynamics.decode_steps = inference.decode_steps  # the config object both dynamics share
        self.precision = inference.precision

    def autocast(self) -> torch.autocast:
        """The context imagination runs in: bf16 autocast when configured with precision bfloat16."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    @property
    def device(self) -> torch.device:
        return self.dynamics.head.weight.device

    def _tensor(self, x: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device).to(dtype)

    def tokens(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 frames [...,H,W,3] -> token ids [...,N] (N = (H/8)*(W/8), row-major), each frame on its own.

        Always in float32, so that training under bf16 autocast sees the tokens inference sees.
        """
        with torch.autocast(self.device.type, enabled=False):
            return self.tokenizer.encode(self._tensor(frames, torch.uint8)).flatten(-2)

    def window_tokens(self, frames, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Consecutive frames uint8 [...,T,H,W,3] -> the token ids [...,T,N] the dynamics reads: static
        patches keep their earlier id (`hold_static_tokens`). `tokens`: the frames' own ids [...,T,N],
        when already computed."""
        frames = self._tensor(frames, torch.uint8)
        ids = self.tokens(frames) if tokens is None else torch.as_tensor(tokens, device=self.device).long()
        held = hold_static_tokens(ids.unflatten(-1, (self.grid, self.grid)), frames, self.cfg.token_hold_threshold)
        return held.flatten(-2)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """token ids [...,N] -> uint8 frames [...,H,W,3]."""
        with self.autocast():
            return to_uint8(self.tokenizer.decode(tokens.reshape(*tokens.shape[:-1], self.grid, self.grid)))

    # -- imagination -------------------------------------------------------------------------
    @torch.no_grad()
    def encode_context(self, frames, actions) -> State:
        """Real context frames uint8 [B,T,H,W,3] and the actions between them [B,T-1,A] -> State.

        Only the last context_length-1 frames are kept (the model attends to no more).
        """
        frames = self._tensor(frames, torch.uint8)
        actions = self._tensor(actions, torch.float32)
        if actions.shape[1] != frames.shape[1] - 1:
            raise ValueError(
                f"{frames.shape[1]} context frames need {frames.shape[1] - 1} actions, got {actions.shape[1]}"
            )
        keep = min(frames.shape[1], self.dynamics.capacity)
        tokens = self.window_tokens(frames[:, -keep:])  # [B,T',N]
        with self.autocast():
            state, _ = self.dynamics.prefill(tokens, self.actions.context(actions[:, actions.shape[1] - keep + 1 :]))
        return state

    @torch.no_grad()
    def step(self, state: State, actions) -> tuple[State, torch.Tensor, torch.Tensor]:
        """Apply actions [B,A] -> (new state, predicted frames uint8 [B,H,W,3], done probability [B])."""
        prediction = self.imagine(state, actions)
        return prediction.state, prediction.frame, prediction.done

    @torch.no_grad()
    def imagine(self, state: State, actions) -> Imagined:
        """`step` with the model's own uncertainty about the frame: its token entropy in [0, 1]."""
        with self.autocast():
            cond = self.actions.next(self._tensor(actions, torch.float32))
            state, tokens, done_logit, entropy = self.dynamics.predict_next(state, cond)
        return Imagined(state, self.decode(tokens), torch.sigmoid(done_logit), entropy)

    @torch.no_grad()
    def done_probability(self, frames, actions, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Done probability [B,T] of each of T <= context_length consecutive frames uint8 [B,T,H,W,3]
        (actions [B,T-1,A]); `tokens`: the frames' own ids [B,T,N] (from `tokens`), when already computed.

        Frame t's value uses frames <= t: the reward on real or simulated frames calls this.
        """
        if frames.shape[1] > self.cfg.context_length:
            raise ValueError(f"{frames.shape[1]} frames given; the model attends to at most {self.cfg.context_length}")
        ids = self.window_tokens(frames, tokens)
        _, done_logits = self.dynamics.encode(ids, self.actions.context(self._tensor(actions, torch.float32)))
        return torch.sigmoid(done_logits)

    def imagine_goal(self, first_frames, instructions: list[str], max_steps: int = 50) -> GoalImagination:
        """Imagine each task from its first frame uint8 [B,H,W,3] until done >= threshold (goal frame)."""
        return self.goal.imagine(self.tokenizer, self._tensor(first_frames, torch.uint8), instructions, max_steps)

    # -- training losses (batches as the loader yields them, tensors on the model's device) -------
    def action_loss(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor,
        done: torch.Tensor,
        tokens: torch.Tensor | None = None,
        labelled: torch.Tensor | None = None,
    ):
        """frames uint8 [B,T,H,W,3] (with their own token ids [B,T,N] when precomputed), actions [B,T,A]
        (a_t follows frame t; the last is unused), done [B,T], labelled bool [B] (None: all)."""
        with torch.no_grad():
            ids = self.window_tokens(frames, tokens)
        return self.dynamics.loss(ids, self.actions.context(actions[:, :-1]), done, labelled)

    def goal_loss(
        self, frames: torch.Tensor, instructions: list[str], done: torch.Tensor, tokens: torch.Tensor | None = None
    ):
        with torch.no_grad():
            ids = self.window_tokens(frames, tokens)
        return self.goal.loss(ids, instructions, done)

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        save_tensors(path, self.state_dict(), {"format": FORMAT, "config": dataclasses.asdict(self.cfg)})

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> WorldModel:
        tensors, meta = load_tensors(path, ("format", "config"))
        if meta["format"] != FORMAT or not isinstance(meta["config"], dict):
            raise CheckpointError(f"{path}: format {meta['format']!r}, expected {FORMAT!r} with a config mapping")
        try:
            model = cls(from_dict(WorldModelConfig, meta["config"]))
        except (ConfigError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: config does not build a model ({err})") from None
        model.load_weights(path, tensors)
        return model.to(device).eval()

    def load_weights(self, path: str | Path, tensors: dict[str, torch.Tensor] | None = None) -> None:
        """Load weights from a checkpoint of the same shapes (e.g. to resume training)."""
        if tensors is None:
            tensors, _ = load_tensors(path, ("format", "config"))
        check_state_dict(path, self, tensors)
        self.load_state_dict(tensors)
