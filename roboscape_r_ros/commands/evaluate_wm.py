"""`roboscape-r evaluate-wm`: the world model of a train-wm run on the run's held-out episodes.

    roboscape-r evaluate-wm run=outputs/runs/wm3_cpu
    roboscape-r evaluate-wm run=outputs/runs/wm3_cpu dataset=outputs/datasets/other   # every episode

Writes <run>/eval/: report.md (tables), metrics.json, psnr_vs_horizon.png, done_roc.png,
real_dream_goal.gif (real | dreamed open loop | goal model) and controllability.png/.gif.

Which episodes: on the run's own dataset (the path its split.json / config.yaml names, with the
episode and frame counts split.json was made for) the held-out episodes of split.json; on any other
dataset with the model's action dimensions and frame size, every episode (split.json's indices would
name other episodes there).

What is measured (all on those episodes):
- Open-loop rollouts: from `context_length-1` real frames the action model imagines h steps from the
  recorded actions alone (h in `horizons`, one world-model step = frame_skip control steps). Each
  episode contributes up to `windows_per_episode` windows of the longest listed horizon it can hold,
  and each window is scored at every listed horizon up to its own; so long horizons are scored on
  the long (mostly failed and random) episodes only: the tables give the counts.
  Metrics of the frame h steps ahead: PSNR, SSIM, perceptual distance (backend named in the
  report) against the recorded frame, beside the copy-last-frame baseline (the last real context
  frame) and the tokenizer's own reconstruction of the recorded frame (the ceiling); PSNR on the
  changing pixels only (a channel differs by more than `change_threshold` from the last context
  frame); action controllability dPSNR = PSNR with the true actions minus PSNR with the imagined
  steps' actions shuffled across windows (a derangement within windows of the same length).
  Per-image PSNR is capped at 50 dB (identical frames would give infinity).
- Done head on real frames: the done probability of every recorded frame given up to
  context_length frames ending at it (frame_skip apart). Positives: done label >= 0.5 (the last
  ~17% of a successful episode's approach and the frames after success). Accuracy at p = 0.5,
  AUROC, and the false-positive rate at the done threshold (p >= 0.9 ends an episode) on every
  frame of failed and random episodes, per frame and per episode (fires anywhere).
- Done head on dreamed frames: the same AUROC on the open-loop rollouts' imagined frames.
- Goal model: from frame 0 and the instruction of each successful held-out episode, the goal
  frame (first done >= 0.9, or the last imagined frame) against the episode's true final frame,
  beside two baselines: the task's mean final frame over the training split's successful episodes
  (of the run's dataset: n/a when it no longer opens), and the first frame.
- Change rates between consecutive world-model frames: the share of token ids that change, in the
  ids the dynamics reads (`window_tokens` over context_length windows: with token_hold_threshold >= 0
  static patches keep their id) and as each frame encodes on its own; beside the share of 8x8
  patches and of pixels that change by more than `change_threshold` in a channel.
- Controllability sheet: from `sheet_contexts` real contexts the model imagines `sheet_steps` steps
  under each of six held actions (+-1 on one dimension; rollout.held_actions); divergence = mean
  absolute pixel difference of one held action's final dreamed frame from the others' (0-255).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.data.lerobot import DatasetError
from roboscape_r_ros.data.reader import EpisodeDataset, open_run_dataset
from roboscape_r_ros.devices import torch_device
from roboscape_r_ros.files import write_atomic
from roboscape_r_ros.markdown import number
from roboscape_r_ros.perception.distance import PerceptionConfig, make_distance
from roboscape_r_ros.runs import RunError, RunFolder
from roboscape_r_ros.world_model.config import InferenceConfig
from roboscape_r_ros.world_model.evaluation import metrics, report, rollouts
from roboscape_r_ros.world_model.evaluation.metrics import GoalRun, Metrics, Roc, Scored
from roboscape_r_ros.world_model.model import WorldModel
from roboscape_r_ros.world_model.rollout import controllability_sheet
from roboscape_r_ros.world_model.train import MODEL_FILE, saved_step

PERCEPTUAL_NOTES = {
    "effnet": "EfficientNet-Lite0 ImageNet features, LPIPS-style, uncalibrated",
    "lpips": "LPIPS-AlexNet v0.1",
    "ssim": "1 - SSIM",
}


@dataclass
class EvaluateWMConfig:
    run: str = option("outputs/runs/world_model", help="run folder written by `roboscape-r train-wm`")
    checkpoint: str = option("", help="world model file (default: <run>/world_model.safetensors)")
    dataset: str = option("", help="dataset folder (default: the run's dataset, from its config.yaml)")
    output: str = option("", help="report folder (default: <run>/eval)")
    horizons: list[int] = option([1, 4, 8, 16], help="open-loop horizons in world-model steps")
    windows_per_episode: int = option(4, help="rollout windows per held-out episode, evenly spread")
    change_threshold: int = option(
        10, help="a pixel changes when a channel differs by more than this (0-255) from the last context frame"
    )
    perception: PerceptionConfig = option(PerceptionConfig(), help="perceptual distance of the report")
    batch_size: int = option(64, help="windows imagined at once")
    inference: InferenceConfig = option(InferenceConfig(), help="how the world model imagines (speed settings)")
    goal_max_steps: int = option(0, help="goal-model imagination cap in steps (0: longest held-out success + 4)")
    examples: int = option(4, help="successful held-out episodes in the real | dreamed | goal GIF")
    sheet_steps: int = option(8, help="world-model steps imagined under each held action of the controllability sheet")
    sheet_contexts: int = option(2, help="real context windows of the controllability sheet (different tasks first)")
    seed: int = option(0, help="seed of the action shuffle")
    device: str = option("auto", help="torch device: auto (cuda when available), cpu, cuda, cuda:1, ...")
    threads: int = option(0, help="torch CPU threads (0: torch's default)")
    progress: bool = option(True, help="show progress bars")


class Evaluation:
    """What an evaluate-wm config names, opened and checked: the run, the dataset, the scored episodes
    (`scored`) and the model; each part of the evaluation is one call (world_model/evaluation)."""

    def __init__(self, cfg: EvaluateWMConfig):
        self.cfg = cfg
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        horizons = sorted(set(cfg.horizons))
        if not horizons or horizons[0] < 1:
            raise ConfigError(f"horizons must be positive step counts, got {cfg.horizons}")
        self.horizons = horizons
        self.run = RunFolder.open(cfg.run, create=False)
        if not self.run.file("split.json").exists():
            raise RunError(f"{self.run.path}: no split.json (not a train-wm run folder)")
        self.split = self.run.read_json("split.json")
        run_cfg = self.run.read_config() if self.run.file("config.yaml").exists() else {}
        self.run_dataset: str | None = self.split.get("dataset") or run_cfg.get("dataset")
        dataset_path = cfg.dataset or self.run_dataset
        if not dataset_path:
            raise RunError(f"{self.run.path}: config.yaml names no dataset; set dataset=...")
        self.dataset = open_run_dataset(dataset_path, self.split)
        own_paths = {Path(p).resolve() for p in (run_cfg.get("dataset"), self.split.get("dataset")) if p}
        self.own_dataset = self.dataset.root.resolve() in own_paths
        if self.own_dataset:
            self.check_split(self.dataset)
            self.held_out = list(self.split["held_out"])
            self.scored_text = f"the run's {len(self.held_out)} held-out episodes (split.json)"
        else:
            self.held_out = list(range(self.dataset.num_episodes))
            self.scored_text = f"all {self.dataset.num_episodes} episodes (not the run's dataset)"
        self.device = torch_device(cfg.device)
        self.checkpoint = Path(cfg.checkpoint) if cfg.checkpoint else self.run.file(MODEL_FILE)
        self.model = WorldModel.from_checkpoint(self.checkpoint, self.device)
        self.model.configure(cfg.inference)
        mc = self.model.cfg
        if self.dataset.image_shape != (mc.image_size, mc.image_size, 3):
            raise ConfigError(
                f"{self.dataset.root}: {self.dataset.image_shape[0]}px frames, the model takes {mc.image_size}px"
            )
        if len(self.dataset.action_names) != mc.action_dim:
            raise ConfigError(
                f"{self.dataset.root}: {len(self.dataset.action_names)}-D actions "
                f"({', '.join(self.dataset.action_names)}), the model takes {mc.action_dim}-D"
            )
        for name in ("sheet_steps", "sheet_contexts"):
            if getattr(cfg, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
        self.scored = Scored(
            self.model, self.dataset, self.dataset.load_arrays(), self.held_out, make_distance(cfg.perception)
        )
        self.out = Path(cfg.output) if cfg.output else self.run.path / "eval"
        self.out.mkdir(parents=True, exist_ok=True)
        self.rng = np.random.default_rng(cfg.seed)

    def check_split(self, dataset: EpisodeDataset) -> None:
        """RunError unless `dataset` has the episode and frame counts split.json was made for."""
        made_for = (self.split.get("num_episodes"), self.split.get("num_frames"))
        if made_for != (dataset.num_episodes, dataset.num_frames):
            raise RunError(
                f"{self.run.file('split.json')}: made for {made_for[0]} episodes / {made_for[1]} frames, "
                f"{dataset.root} has {dataset.num_episodes} / {dataset.num_frames}"
            )

    def open_loop(self) -> Metrics:
        cfg = self.cfg
        return rollouts.open_loop(
            self.scored,
            self.horizons,
            cfg.windows_per_episode,
            cfg.change_threshold,
            cfg.batch_size,
            self.rng,
            cfg.progress,
        )

    def change_rates(self) -> Metrics:
        return metrics.change_rates(self.scored, self.cfg.change_threshold)

    def done_head(self) -> tuple[Metrics, Roc | None]:
        return metrics.done_head(self.scored, self.cfg.progress)

    def goal_model(self) -> tuple[Metrics, GoalRun | None]:
        trained = saved_step(self.run.path, "goal") != 0
        return metrics.goal_model(self.scored, trained, self.cfg.goal_max_steps, self.task_mean_finals)

    def task_mean_finals(self, tasks: set[str]) -> tuple[dict[str, np.ndarray], str]:
        """Each task's mean final frame over the successful episodes of the run's training split (from the
        run's dataset), and where they come from: n/a with the reason when that dataset does not open."""
        if self.own_dataset:
            dataset, arrays = self.dataset, self.scored.arrays
        elif not self.run_dataset:
            return {}, "n/a: the run names no dataset"
        else:
            try:
                dataset = open_run_dataset(self.run_dataset, self.split)
                self.check_split(dataset)
            except (DatasetError, RunError) as err:
                return {}, f"n/a: the run's dataset does not open ({err})"
            arrays = dataset.load_arrays()
        means = metrics.task_mean_finals(dataset, arrays, self.split["train"], tasks)
        return means, f"the run's training split of {dataset.root}"

    def gif(self, goal: GoalRun | None) -> Path | None:
        """real | dreamed | goal model, into real_dream_goal.gif."""
        return rollouts.real_dream_goal_gif(self.scored, goal, self.cfg.examples, self.out / "real_dream_goal.gif")

    def describe(self, seconds: float) -> Metrics:
        """metrics.json's head: what was scored, with which model and settings."""
        mc, cfg = self.model.cfg, self.cfg
        held_kinds: dict[str, int] = defaultdict(int)
        for e in self.held_out:
            held_kinds[self.scored.kind(e)] += 1
        backend = self.scored.distance.name
        return {
            "run": str(self.run.path),
            "checkpoint": str(self.checkpoint),
            "dataset": str(self.dataset.root),
            "device": str(self.device),
            "seconds": seconds,
            "episodes_scored": self.scored_text,
            "held_out_episodes": len(self.held_out),
            "held_out_kinds": ", ".join(f"{k} {v}" for k, v in sorted(held_kinds.items())),
            "model": {
                "params_m": sum(p.numel() for p in self.model.parameters()) / 1e6,
                "image_size": mc.image_size,
                "context_length": mc.context_length,
                "frame_skip": mc.frame_skip,
                "decode_steps": mc.dynamics.decode_steps,
                "precision": self.model.precision,
            },
            "perceptual_backend": backend,
            "perceptual_note": PERCEPTUAL_NOTES.get(backend, backend),
            "config": {
                "horizons": self.horizons,
                "windows_per_episode": cfg.windows_per_episode,
                "change_threshold": cfg.change_threshold,
                "seed": cfg.seed,
            },
        }


@dataclass(frozen=True)
class WorldModelEvaluation:
    report: Path  # report.md; metrics.json beside it
    metrics: dict[str, Any]  # what metrics.json holds

    def __str__(self) -> str:
        ol, done, goal = self.metrics["open_loop"]["horizons"], self.metrics["done_head"], self.metrics["goal_model"]
        h = report.headline_horizon(ol)
        head = f"{h}-step PSNR gain {number(ol[h]['psnr_gain'])} dB, dPSNR {number(ol[h]['dpsnr'])} dB; " if h else ""
        goal_text = (
            f"{number(goal.get('perceptual_goal'), 3)} vs mean final "
            f"{number(goal.get('perceptual_task_mean_final'), 3)}"
            if goal["trained"]
            else "none (the run trained no goal stage)"
        )
        return (
            f"report   {self.report}\n"
            f"metrics  {self.report.with_name('metrics.json')}\n"
            f"summary  {head}done AUROC {number(done['auroc'], 3)}, done FPR failed/random episodes "
            f"{number(done['fpr_failed']['episode_fpr'])}/{number(done['fpr_random']['episode_fpr'])}; "
            f"goal model {goal_text}"
        )


def run_evaluate_wm(cfg: EvaluateWMConfig) -> WorldModelEvaluation:
    start = time.perf_counter()
    ev = Evaluation(cfg)
    ev.model.eval()
    open_loop = ev.open_loop()
    change_rates = ev.change_rates()
    done, roc = ev.done_head()
    goal, goal_run = ev.goal_model()
    gif = ev.gif(goal_run)
    plots = report.write_plots(ev.out, open_loop, roc)
    sheet = controllability_sheet(ev.model, ev.dataset, ev.held_out, ev.out, cfg.sheet_steps, cfg.sheet_contexts)
    results = {
        **ev.describe(time.perf_counter() - start),
        "open_loop": open_loop,
        "change_rates": change_rates,
        "done_head": done,
        "goal_model": goal,
        "controllability": sheet,
    }
    results["seconds"] = time.perf_counter() - start
    write_atomic(ev.out / "metrics.json", json.dumps(metrics.json_safe(results), indent=2) + "\n")
    write_atomic(ev.out / "report.md", report.markdown(results, plots, gif))
    return WorldModelEvaluation(ev.out / "report.md", results)
