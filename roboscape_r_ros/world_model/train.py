"""Training loops of the three stages: tokenizer, then action world model, then goal world model.

Each stage is a plain function over an iterator of loader batches
    {"frames": uint8 [B,T,H,W,3], "actions": float32 [B,T,A], "done": float32 [B,T], "task_index": int64 [B]}
(numpy or torch); the action and goal stages also take "tokens" (each frame's own token ids [B,T,N],
precomputed with the frozen tokenizer) beside "frames", which saves re-encoding every window. With a
run folder a stage saves `world_model.safetensors` and its optimizer state `optim-<stage>.safetensors`
(tensors + JSON step counter, no pickle) every `checkpoint_every` steps and resumes from them; a
finished stage returns at once. `log(stage, step, metrics)` receives the metrics of every step (for
TensorBoard); tqdm shows progress.

Under torchrun (roboscape_r_ros.distributed) a stage's loss runs inside DistributedDataParallel, which
averages the gradients of the ranks; each rank's batches are its shard of the global batch, the
logged metrics are averaged over the ranks, and rank 0 alone saves checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from roboscape_r_ros.distributed import data_parallel, draw, mean_metrics, ranks
from roboscape_r_ros.world_model.checkpoint import load_optimizer, load_tensors, optimizer_tensors, save_tensors
from roboscape_r_ros.world_model.model import WorldModel

Batch = dict[str, torch.Tensor]
Log = Callable[[str, int, dict[str, float]], None]
MODEL_FILE = "world_model.safetensors"


def train_tokenizer(
    model: WorldModel,
    batches: Iterator[dict],
    steps: int | None = None,
    run_dir: str | Path | None = None,
    log: Log | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Reconstruction training on one random frame per sequence (batch_size frames per step)."""

    def loss(batch: Batch):
        frames = batch["frames"]  # [B,T,H,W,3]
        pick = draw(partial(torch.randint, frames.shape[1]), (frames.shape[0],), device=frames.device)
        return model.tokenizer.loss(frames[torch.arange(frames.shape[0], device=frames.device), pick])

    steps = steps or model.cfg.train.tokenizer_steps
    return _fit("tokenizer", model, model.tokenizer, loss, batches, steps, run_dir, log, progress)


def train_action_model(
    model: WorldModel,
    batches: Iterator[dict],
    steps: int | None = None,
    run_dir: str | Path | None = None,
    log: Log | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Next-frame token prediction + done head of the action world model (tokenizer frozen)."""

    def loss(batch: Batch):
        return model.action_loss(
            batch["frames"], batch["actions"], batch["done"], batch.get("tokens"), batch.get("labelled")
        )

    trained = nn.ModuleList([model.actions, model.dynamics])
    return _fit("action", model, trained, loss, batches, steps or model.cfg.train.action_steps, run_dir, log, progress)


def train_goal_model(
    model: WorldModel,
    batches: Iterator[dict],
    instructions: Sequence[str],
    steps: int | None = None,
    run_dir: str | Path | None = None,
    log: Log | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """The goal world model; `instructions[task_index]` is each sequence's instruction."""

    def loss(batch: Batch):
        texts = [instructions[i] for i in batch["task_index"].tolist()]
        return model.goal_loss(batch["frames"], texts, batch["done"], batch.get("tokens"))

    return _fit("goal", model, model.goal, loss, batches, steps or model.cfg.train.goal_steps, run_dir, log, progress)


def to_device(batch: dict, device: torch.device) -> Batch:
    """A loader batch (numpy or torch) on ``device``; to CUDA through pinned host memory, so the copy runs
    asynchronously while the GPU still works on the previous step."""
    if device.type != "cuda":
        return {k: torch.as_tensor(v).to(device) for k, v in batch.items()}
    return {k: torch.as_tensor(v).pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


def saved_step(run_dir: str | Path, stage: str) -> int:
    """The step a stage's checkpoint in run_dir holds (0 without one): where a resumed stage continues."""
    path = Path(run_dir) / f"optim-{stage}.safetensors"
    if not path.exists():
        return 0
    _, meta = load_tensors(path, ("stage", "step"))
    return int(meta["step"])


def _learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _fit(
    stage: str,
    model: WorldModel,
    trained: nn.Module,
    loss_fn: Callable[[Batch], tuple[torch.Tensor, dict]],
    batches: Iterator[dict],
    steps: int,
    run_dir: str | Path | None,
    log: Log | None,
    progress: bool = True,
) -> list[dict[str, float]]:
    cfg = model.cfg.train
    device = model.device
    model.requires_grad_(False)
    trained.requires_grad_(True)
    params = list(trained.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    run_dir = Path(run_dir) if run_dir is not None else None
    start = _resume(run_dir, stage, model, opt) if run_dir is not None else 0
    rank = ranks()
    stage_loss = data_parallel(trained, torch.compile(loss_fn) if cfg.compile else loss_fn)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp if device.type == "cuda" else cfg.cpu_amp)
    history: list[dict[str, float]] = []
    model.train()
    for step in tqdm(
        range(start, steps),
        desc=f"world model: {stage}",
        initial=start,
        total=steps,
        dynamic_ncols=True,
        disable=not (progress and rank.main),
    ):
        batch = to_device(next(batches), device)
        lr = _learning_rate(step, steps, cfg.lr, cfg.warmup_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        with amp:
            loss, metrics = stage_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        metrics = {**mean_metrics(metrics), "lr": lr, "grad_norm": grad_norm.item()}
        history.append(metrics)
        if log is not None:
            log(stage, step + 1, metrics)
        if run_dir is not None and rank.main and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == steps):
            _save(run_dir, stage, step + 1, model, opt)
    model.eval()
    model.requires_grad_(True)
    return history


def _save(run_dir: Path, stage: str, step: int, model: WorldModel, opt: torch.optim.Optimizer) -> None:
    model.save(run_dir / MODEL_FILE)
    tensors, groups = optimizer_tensors(opt)
    meta = {"format": "roboscape_r_ros.optimizer/1", "stage": stage, "step": step, "param_groups": groups}
    save_tensors(run_dir / f"optim-{stage}.safetensors", tensors, meta)


def _resume(run_dir: Path, stage: str, model: WorldModel, opt: torch.optim.Optimizer) -> int:
    """Load model weights and optimizer state of an interrupted stage; the step to continue from."""
    path = run_dir / f"optim-{stage}.safetensors"
    if not path.exists():
        return 0
    tensors, meta = load_tensors(path, ("stage", "step", "param_groups"))
    model.load_weights(run_dir / MODEL_FILE)
    load_optimizer(path, opt, tensors, meta["param_groups"])
    return int(meta["step"])
