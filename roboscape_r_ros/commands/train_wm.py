"""`roboscape-r train-wm`: tokenizer, then action world model, then goal world model, in one run folder.

    roboscape-r train-wm --preset cpu dataset=outputs/datasets/wm3 name=wm3_cpu

The run folder (outputs/runs/<name>, or `run=...`) holds
    config.yaml                 the resolved config (a resumed run must keep the model settings)
    split.json                  train / held-out episodes (split per task and kind; evaluate-wm uses it)
    world_model.safetensors     weights + config, written atomically at every checkpoint
    optim-<stage>.safetensors   optimizer state and step of each stage (resume point)
    tokens.npy, tokens.json     every dataset frame's token ids under the final tokenizer (a cache)
    tensorboard/                scalars of every stage, dream-vs-real filmstrips
    media/                      dream_action_<step>.gif (real | dreamed, open loop, held-out), goal.gif
    train.log                   what happened, with times (resumes included)
Rerunning the same command continues where it stopped, also after kill -9.

Under `torchrun --nproc_per_node N` (docs/distributed.md) the same command trains with
DistributedDataParallel: model.train.batch_size is the global batch, split evenly over the N ranks;
rank 0 writes the run folder.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.devices import torch_device
from roboscape_r_ros.distributed import ranks
from roboscape_r_ros.files import write_atomic
from roboscape_r_ros.runs import RunError, RunFolder, run_path
from roboscape_r_ros.world_model.config import WorldModelConfig
from roboscape_r_ros.world_model.data import SkipWindows, encode_frames, stratified_split
from roboscape_r_ros.world_model.finetune import SPLIT_FILE, InitModel, extended_split, load_init
from roboscape_r_ros.world_model.media import labelled_grid, write_gif
from roboscape_r_ros.world_model.model import WorldModel
from roboscape_r_ros.world_model.rollout import dream_vs_real, spread
from roboscape_r_ros.world_model.train import (
    MODEL_FILE,
    saved_step,
    train_action_model,
    train_goal_model,
    train_tokenizer,
)

STAGES = ("tokenizer", "action", "goal")


@dataclass
class TrainWMConfig:
    dataset: str = option(
        "outputs/datasets/demo", help="dataset folder: written by collect, import-bag or recording, or any LeRobot v3"
    )
    camera: str = option(
        "", help="camera feature to train on (e.g. observation.images.wrist) when the dataset has several"
    )
    name: str = option("world_model", help="run name: the run folder is outputs/runs/<name> unless `run` is set")
    run: str = option("", help="run folder; rerunning the same command on it resumes where it stopped")
    model: WorldModelConfig = option(WorldModelConfig(), help="world model sizes and optimisation")
    held_out_fraction: float = option(
        0.15, help="share of episodes held out for evaluation, within every task and episode kind"
    )
    split_seed: int = option(0, help="seed of the train / held-out episode split")
    seed: int = option(0, help="seed of the initial weights and of the training batches")
    device: Literal["auto", "cpu", "cuda"] = option("auto", help="torch device (auto: cuda when available)")
    threads: int = option(0, help="torch CPU threads (0: torch's default); 1 is fastest on a busy 2-core machine")
    goal_first_window_share: float = option(
        0.25,
        help="share of each goal-model batch that starts at an episode's first frame (the goal model "
        "imagines from frame 0)",
    )
    init: str = option(
        "",
        help="start from this world model's weights (a run folder or its world_model.safetensors), e.g. to fine-tune "
        "it on its dataset plus a policy's rollouts; its model settings must equal model.* (model.train may "
        "differ), and the dataset must begin with the init run's, whose episodes keep their side of its split",
    )
    finetune: list[str] = option(
        ["action"],
        help="with init: the stages trained, each for its model.train.<stage>_steps (tokenizer, action: dynamics "
        "and done head, goal); the others keep the init's weights",
    )
    held_out_new: bool = option(
        True,
        help="with init: hold out held_out_fraction of the episodes beyond the init run's dataset too (false: "
        "they all train)",
    )
    media_every: int = option(0, help="action-stage steps between dream-vs-real GIFs (0: only when the stage ends)")
    media_examples: int = option(4, help="held-out episodes shown in each dream-vs-real GIF")
    progress: bool = option(True, help="show progress bars")

    def __post_init__(self) -> None:
        if unknown := sorted(set(self.finetune) - set(STAGES)):
            raise ConfigError(f"finetune: unknown stage {unknown[0]!r} (stages: {', '.join(STAGES)})")
        if self.init and not self.finetune:
            raise ConfigError("init needs at least one stage to fine-tune (finetune=[action])")

    def trains(self, stage: str) -> bool:
        return not self.init or stage in self.finetune


def check_dataset(dataset: EpisodeDataset, cfg: WorldModelConfig) -> None:
    size = cfg.image_size
    if dataset.image_shape != (size, size, 3):
        raise ConfigError(
            f"{dataset.root}: frames are {dataset.image_shape[0]}x{dataset.image_shape[1]}, the model "
            f"takes {size}x{size} (set model.image_size={dataset.image_shape[0]})"
        )
    if len(dataset.action_names) != cfg.action_dim:
        raise ConfigError(
            f"{dataset.root}: actions have {len(dataset.action_names)} dimensions, the model "
            f"{cfg.action_dim} (set model.action_dim={len(dataset.action_names)})"
        )


def load_split(
    run: RunFolder, dataset: EpisodeDataset, cfg: TrainWMConfig, init: InitModel | None
) -> tuple[list[int], list[int]]:
    """The run's split.json, written on the first run and checked against the dataset on a resume; with an
    ``init`` that has a split, that split's episodes keep their side."""
    if run.file("split.json").exists():
        split = run.read_json("split.json")
        if (split.get("num_episodes"), split.get("num_frames")) != (dataset.num_episodes, dataset.num_frames):
            raise RunError(
                f"{run.file('split.json')}: made for a dataset of {split.get('num_episodes')} episodes / "
                f"{split.get('num_frames')} frames; {dataset.root} has {dataset.num_episodes} / "
                f"{dataset.num_frames}"
            )
        if split.get("camera", dataset.image_key) != dataset.image_key:
            raise RunError(f"{run.file('split.json')}: made for camera {split['camera']}, now {dataset.image_key}")
        return list(split["train"]), list(split["held_out"])
    fraction, seed = cfg.held_out_fraction, cfg.split_seed
    parent = init.split if init is not None else None
    if parent is None:
        train, held_out = stratified_split(dataset.episodes, fraction, seed)
    else:
        train, held_out = extended_split(parent, dataset, fraction, seed, cfg.held_out_new)
    kinds: defaultdict[str, int] = defaultdict(int)
    for i in held_out:
        kinds[f"{dataset.episodes[i].task}/{dataset.episodes[i].kind}"] += 1
    run.write_json(
        "split.json",
        {
            # absolute: the dreamer, imagination and evaluate-wm open it from whatever folder they run in
            "dataset": str(Path(dataset.root).resolve()),
            "camera": dataset.image_key,  # what every later command reads from that dataset
            "num_episodes": dataset.num_episodes,
            "num_frames": dataset.num_frames,
            "held_out_fraction": fraction,
            "seed": seed,
            "stratified_by": "task and kind",
            "train": train,
            "held_out": held_out,
            "held_out_groups": dict(sorted(kinds.items())),
            # episodes without success/done labels (imported bags): they train the dynamics, not the done head
            "unlabelled": {
                "train": sum(not dataset.episodes[i].labelled for i in train),
                "held_out": sum(not dataset.episodes[i].labelled for i in held_out),
            },
            **(
                {
                    # the first num_episodes episodes are the init run's dataset, split as it was
                    "parent": {
                        "init": str(init.path.resolve()),
                        "dataset": parent["dataset"],
                        "num_episodes": parent["num_episodes"],
                        "num_frames": parent["num_frames"],
                        "held_out_new": cfg.held_out_new,
                    }
                }
                if parent is not None and init is not None  # (the parent split is the init run's)
                else {}
            ),
        },
    )
    return train, held_out


def tokenizer_digest(model: WorldModel) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.tokenizer.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cached_tokens(run: RunFolder, model: WorldModel, frames: np.ndarray, progress: bool) -> np.ndarray:
    """Token ids of every dataset frame, reused from run/tokens.npy while the tokenizer is unchanged
    (a read-only run folder computes them without writing the cache)."""
    digest = tokenizer_digest(model)
    path, meta = run.file("tokens.npy"), run.file("tokens.json")
    if path.exists() and meta.exists():
        try:
            info = run.read_json("tokens.json")
            tokens = np.load(path)
            if info.get("tokenizer") == digest and tokens.shape[0] == len(frames):
                return tokens
        except (RunError, OSError, ValueError):
            pass  # a damaged cache is recomputed
    start = time.perf_counter()
    tokens = encode_frames(model, frames, progress=progress)
    if run.read_only:
        return tokens
    buffer = io.BytesIO()
    np.save(buffer, tokens)
    write_atomic(path, buffer.getvalue())
    run.write_json("tokens.json", {"tokenizer": digest, "frames": len(frames)})
    run.log(f"tokenized {len(frames)} frames in {time.perf_counter() - start:.0f} s")
    return tokens


class StageLogger:
    """The `log` callback of the stages: TensorBoard scalars every step, a train.log line per checkpoint,
    wall time per stage (kept in progress.json), and dream-vs-real media during the action stage."""

    def __init__(self, run: RunFolder, writer, media=None, media_every: int = 0, checkpoint_every: int = 100):
        self.run, self.writer, self.media, self.media_every = run, writer, media, media_every
        self.every = checkpoint_every
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0
        progress = run.read_json("progress.json") if run.file("progress.json").exists() else {}
        self.seconds: dict[str, float] = defaultdict(float, progress.get("seconds", {}))
        self.last = time.perf_counter()

    def start(self, stage: str) -> None:
        self.last = time.perf_counter()
        self.sums.clear()
        self.count = 0

    def __call__(self, stage: str, step: int, metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self.last
        self.last = now
        for key, value in metrics.items():
            self.writer.add_scalar(f"{stage}/{key}", value, step)
            if np.isfinite(value):
                self.sums[key] += value
        self.count += 1
        if step % self.every == 0:
            means = ", ".join(f"{k} {v / self.count:.4g}" for k, v in self.sums.items() if k not in ("lr",))
            self.run.log(f"{stage} step {step}: {means} ({self.seconds[stage]:.0f} s in stage)")
            self.run.write_json("progress.json", {"seconds": dict(self.seconds)})
            self.sums.clear()
            self.count = 0
        if stage == "action" and self.media is not None and self.media_every and step % self.media_every == 0:
            self.media(step)
            self.last = time.perf_counter()  # media time is not training time

    def finish(self, stage: str) -> None:
        self.run.write_json("progress.json", {"seconds": dict(self.seconds)})
        self.writer.flush()


@dataclass(frozen=True)
class TrainWMResult:
    """What train-wm made; printed by the CLI, read by the demo pipeline."""

    run: Path
    seconds: dict[str, float]  # wall time of each stage's training
    train_episodes: int
    held_out_episodes: int

    @property
    def timing(self) -> str:
        stages = ", ".join(f"{s} {self.seconds.get(s, 0):.0f} s" for s in STAGES)
        return f"{stages}; total {sum(self.seconds.values()) / 60:.1f} min"

    def __str__(self) -> str:
        return (
            f"world model  {self.run / MODEL_FILE}\n"
            f"stages       {self.timing}\n"
            f"episodes     {self.train_episodes} train, {self.held_out_episodes} held out (split.json)\n"
            f"media        {self.run / 'media'}\n"
            f"tensorboard  tensorboard --logdir {self.run / 'tensorboard'}"
        )


def run_train_wm(cfg: TrainWMConfig) -> TrainWMResult:
    device = torch_device(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if not 0.0 <= cfg.goal_first_window_share <= 1.0:
        raise ConfigError(f"goal_first_window_share must lie in [0, 1], got {cfg.goal_first_window_share}")
    wm_cfg = cfg.model
    rank = ranks()
    shard = rank.shard(wm_cfg.train.batch_size, "model.train.batch_size")  # this rank's rows of each batch
    dataset = EpisodeDataset.open(cfg.dataset, cfg.camera)
    check_dataset(dataset, wm_cfg)
    with RunFolder.open(run_path(cfg.run, cfg.name), lock=True, read_only=not rank.main) as run:
        run.write_config(
            cfg,
            must_match=("dataset", "model.", "held_out_fraction", "split_seed", "init", "finetune", "held_out_new"),
            ignore=("model.train.",),
        )
        init = load_init(cfg.init, wm_cfg) if cfg.init else None
        train_eps, held_out = load_split(run, dataset, cfg, init)
        processes = f" x {rank.world_size} processes (DDP)" if rank.world_size > 1 else ""
        run.log(
            f"train-wm on {device}{processes}: {dataset.root} "
            f"({len(train_eps)} train / {len(held_out)} held-out episodes)"
        )
        if unlabelled := sum(not meta.labelled for meta in dataset.episodes):
            run.log(f"{unlabelled} episodes have no success/done labels: they train the dynamics, not the done head")
        torch.manual_seed(cfg.seed)
        model = WorldModel(wm_cfg)
        if init is not None:  # a stage that resumes loads the run's own checkpoint over it
            model.load_weights(init.path, init.tensors)
            run.log(f"init: {init.path}; fine-tuning {', '.join(cfg.finetune)}, the rest as it is")
            if init.split is None:
                run.log(f"init: no {SPLIT_FILE} beside it, so the split is drawn anew")
        model.to(device)
        arrays = dataset.load_arrays()
        writer = run.tensorboard()
        media_dir = run.folder("media")

        def media(step: int) -> None:
            was_training = model.training
            model.eval()
            strip = dream_vs_real(
                model, arrays, held_out, media_dir / f"dream_action_{step:06d}.gif", cfg.media_examples
            )
            if strip is not None:
                writer.add_image("action/dream_vs_real", strip, step, dataformats="HWC")
            model.train(was_training)

        logger = StageLogger(run, writer, media if rank.main else None, cfg.media_every, wm_cfg.train.checkpoint_every)
        T, k, B = wm_cfg.context_length, wm_cfg.frame_skip, wm_cfg.train.batch_size
        steps = {
            "tokenizer": wm_cfg.train.tokenizer_steps,
            "action": wm_cfg.train.action_steps,
            "goal": wm_cfg.train.goal_steps,
        }
        starts = {stage: saved_step(run.path, stage) for stage in STAGES}
        for stage in STAGES:
            if 0 < starts[stage] < steps[stage]:
                run.log(f"{stage}: resuming at step {starts[stage]} of {steps[stage]}")
        tokens: list[np.ndarray] = []

        def token_array() -> np.ndarray:
            if not tokens:
                tokens.append(cached_tokens(run, model, arrays.frames, cfg.progress and rank.main))
                logger.last = time.perf_counter()  # tokenizing is not training time of the stage
            return tokens[0]

        def tokenizer_batches():
            loader = SkipWindows(
                dataset,
                context_length=1,
                frame_skip=1,
                batch_size=B,
                episodes=train_eps,
                seed=(cfg.seed, 0, starts["tokenizer"]),
                shard=shard,
            )
            yield from loader

        def action_batches():
            yield from SkipWindows(
                dataset,
                context_length=T,
                frame_skip=k,
                batch_size=B,
                episodes=train_eps,
                seed=(cfg.seed, 1, starts["action"]),
                tokens=token_array(),
                shard=shard,
            )

        successful = [i for i in train_eps if dataset.episodes[i].success]

        def goal_batches():
            yield from SkipWindows(
                dataset,
                context_length=T,
                frame_skip=k,
                batch_size=B,
                episodes=successful,
                seed=(cfg.seed, 2, starts["goal"]),
                tokens=token_array(),
                first_window_share=cfg.goal_first_window_share,
                shard=shard,
            )

        # 1. tokenizer
        if cfg.trains("tokenizer"):
            logger.start("tokenizer")
            train_tokenizer(model, tokenizer_batches(), run_dir=run.path, log=logger, progress=cfg.progress)
            logger.finish("tokenizer")
        # 2. action world model
        if cfg.trains("action"):
            logger.start("action")
            fresh = train_action_model(model, action_batches(), run_dir=run.path, log=logger, progress=cfg.progress)
            logger.finish("action")
            if rank.main and (fresh or not any(media_dir.glob("dream_action_*.gif"))):
                media(steps["action"])
        # 3. goal world model, on successful episodes only
        if not cfg.trains("goal"):
            run.log("goal: kept from init")
        elif successful and steps["goal"] > 0:
            logger.start("goal")
            fresh = train_goal_model(
                model, goal_batches(), dataset.tasks, run_dir=run.path, log=logger, progress=cfg.progress
            )
            logger.finish("goal")
            if rank.main and (fresh or not (media_dir / "goal.gif").exists()):
                goal_media(model, dataset, arrays, held_out, media_dir / "goal.gif", cfg.media_examples)
        else:
            run.log(
                "goal: skipped, "
                + ("model.train.goal_steps=0" if successful else "the training episodes hold no successful episode")
            )
        if init is not None and rank.main and not (run.path / MODEL_FILE).exists():  # no stage saved a step
            model.save(run.path / MODEL_FILE)
        writer.close()
        result = TrainWMResult(run.path, dict(logger.seconds), len(train_eps), len(held_out))
        run.log(f"finished: {result.timing}")
        return result


def goal_media(model: WorldModel, dataset: EpisodeDataset, arrays, episodes, path: Path, examples: int) -> None:
    """GIF of real episode | imagined by the goal model, for a few successful held-out episodes."""
    chosen = spread([e for e in episodes if dataset.episodes[e].success] or list(episodes), examples)
    if not chosen:
        return
    k = model.cfg.frame_skip
    first = np.stack([arrays.frames[arrays.starts[e]] for e in chosen])
    imagined = model.imagine_goal(
        first,
        [dataset.episodes[e].instruction for e in chosen],
        max_steps=max(int(arrays.lengths[e]) for e in chosen) // k + 4,
    )
    rows = []
    for i, e in enumerate(chosen):
        real = arrays.frames[arrays.starts[e] : arrays.starts[e] + arrays.lengths[e] : k]
        rows.append([real, imagined.frames[i, : int(imagined.goal_step[i]) + 1].cpu().numpy()])
    write_gif(path, labelled_grid(rows, ["real", "goal model"]), 6.0)
