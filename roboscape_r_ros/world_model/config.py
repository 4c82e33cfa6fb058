"""Typed configuration of the world model: tokenizer, dynamics (with done head), text encoder, training.

Defaults are the `small` preset (CPU demo); presets/world_model/{tiny,base,paper}.yaml change sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from roboscape_r_ros.config import option


@dataclass
class TokenizerConfig:
    levels: list[int] = option([8, 5, 5, 5], help="FSQ levels per latent channel; the codebook size is their product")
    channels: list[int] = option([32, 64, 128], help="conv widths of the 3 stride-2 stages (8x spatial downsampling)")
    res_blocks: int = option(1, help="residual blocks per stage in encoder and decoder")


@dataclass
class DynamicsConfig:
    dim: int = option(128, help="transformer width")
    layers: int = option(4, help="spatial-temporal blocks")
    heads: int = option(4, help="attention heads (dim must divide by heads)")
    mlp_ratio: int = option(4, help="MLP hidden width as a multiple of dim")
    decode_steps: int = option(2, help="MaskGIT iterations per predicted frame (paper: 2, greedy)")
    temperature: float = option(0.0, help="sampling temperature of MaskGIT decoding; 0 = greedy argmax")
    done_hidden: int = option(128, help="hidden width of the done-head MLP")
    done_weight: float = option(5.0, help="weight of MSE(done_prob, done_label) beside token cross-entropy")
    changed_token_weight: float = option(
        1.0,
        help="cross-entropy weight of the masked tokens that differ from the previous frame's (the moving "
        "arm and objects, a few percent of all tokens) relative to the static ones",
    )
    history_dropout: float = option(
        0.0,
        help="share of training windows trained without history: every frame sees only itself and each predicted "
        "frame the clean frame just before it, so its motion must come from the action (with history, an expert's "
        "motion is predictable from its past frames alone)",
    )


@dataclass
class TextConfig:
    buckets: int = option(4096, help="hash buckets of the word tokenizer (crc32 of each lower-cased word)")
    max_words: int = option(16, help="instruction length cap in words; longer ones are truncated")


@dataclass
class TrainConfig:
    batch_size: int = option(32, help="sequences per optimisation step (the loader batches this many windows)")
    lr: float = option(3e-4, help="AdamW peak learning rate (linear warmup, cosine decay to 10%)")
    weight_decay: float = option(0.01, help="AdamW weight decay")
    warmup_steps: int = option(100, help="linear learning-rate warmup steps")
    grad_clip: float = option(1.0, help="max global gradient norm")
    tokenizer_steps: int = option(3000, help="optimisation steps of the tokenizer stage")
    action_steps: int = option(5000, help="optimisation steps of the action world model stage")
    goal_steps: int = option(3000, help="optimisation steps of the goal (text) world model stage")
    amp: bool = option(True, help="bf16 autocast when training on CUDA (ignored on CPU)")
    cpu_amp: bool = option(
        False,
        help="bf16 autocast when training on a CPU: about 2x the steps a second on CPUs with avx512_bf16 or AMX at "
        "the same held-out quality (docs/results/speed_cpu.md), slower on CPUs without them",
    )
    compile: bool = option(
        False, help="torch.compile each stage's loss (for CUDA; on a CPU it costs ~30 s per stage and gained nothing)"
    )
    checkpoint_every: int = option(500, help="steps between checkpoint saves when a run folder is given")


@dataclass
class WorldModelConfig:
    image_size: int = option(64, help="square frame side in pixels (multiple of 8)")
    action_dim: int = option(4, help="action dimensions (Meta-World: dx, dy, dz, gripper)")
    context_length: int = option(8, help="training window and attention span: context_length-1 past + 1 predicted")
    frame_skip: int = option(
        4,
        help="control steps per world-model step (paper: 4): frames are taken every frame_skip control steps and "
        "the step's action is the mean of those control steps' actions (in a simulator: repeat it frame_skip times)",
    )
    token_hold_threshold: int = option(
        -1,
        help="a frame patch whose pixels all stay within this many levels (0-255) of the frame its token came "
        "from keeps that token id, so the dynamics predicts motion, not re-quantisation flicker; -1: never hold",
    )
    done_threshold: float = option(0.9, help="done probability at which an episode (or sub-task) ends")
    tokenizer: TokenizerConfig = option(TokenizerConfig(), help="frame tokenizer")
    dynamics: DynamicsConfig = option(DynamicsConfig(), help="spatial-temporal transformer of both world models")
    text: TextConfig = option(TextConfig(), help="instruction encoder of the goal world model")
    train: TrainConfig = option(TrainConfig(), help="optimisation")


@dataclass
class InferenceConfig:
    """How a loaded world model imagines: a setting of the command that runs it, not of its checkpoint."""

    decode_steps: int = option(
        0,
        help="MaskGIT iterations per imagined frame (0: the checkpoint's setting); each costs one transformer pass",
        low=0,
    )
    precision: Literal["float32", "bfloat16"] = option(
        "float32",
        help="bfloat16: imagination (and the imagined reward's perceptual network) under bf16 autocast, fast on CPUs "
        "with avx512_bf16 or AMX and on CUDA, slow elsewhere; real frames' token ids stay float32",
    )
