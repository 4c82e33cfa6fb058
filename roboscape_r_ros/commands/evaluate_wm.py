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
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.data.lerobot import KINDS, DatasetError
from roboscape_r_ros.data.reader import EpisodeArrays, EpisodeDataset, open_run_dataset
from roboscape_r_ros.devices import torch_device
from roboscape_r_ros.files import write_atomic
from roboscape_r_ros.perception.distance import PerceptionConfig, make_distance
from roboscape_r_ros.perception.metrics import psnr, ssim
from roboscape_r_ros.runs import RunError, RunFolder
from roboscape_r_ros.stats import auroc, roc_curve
from roboscape_r_ros.world_model.config import InferenceConfig
from roboscape_r_ros.world_model.data import skip_actions
from roboscape_r_ros.world_model.media import labelled_grid, line_plot, write_gif
from roboscape_r_ros.world_model.model import WorldModel
from roboscape_r_ros.world_model.rollout import (
    SHEET_GIF,
    SHEET_PNG,
    controllability_sheet,
    gather,
    rollout,
    spread,
    spread_windows,
    world_frames,
)
from roboscape_r_ros.world_model.train import MODEL_FILE, saved_step

PSNR_CAP = 50.0
FAILURE_KINDS = ("failed", "random", "policy")  # kinds made to fail (or a policy's, which often does)


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
    device: Literal["auto", "cpu", "cuda"] = option("auto", help="torch device (auto: cuda when available)")
    threads: int = option(0, help="torch CPU threads (0: torch's default)")
    progress: bool = option(True, help="show progress bars")


def capped_psnr(a, b) -> np.ndarray:
    return psnr(a, b).clamp(max=PSNR_CAP).numpy()


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """PSNR [n] over the pixels in mask [n,H,W] (NaN where the mask is empty)."""
    err = ((a.astype(np.float32) - b.astype(np.float32)) ** 2).mean(-1)  # [n,H,W]
    count = mask.sum((1, 2))
    mse = np.where(count > 0, (err * mask).sum((1, 2)) / np.maximum(count, 1), np.nan)
    with np.errstate(divide="ignore"):
        return np.minimum(10 * np.log10(255.0**2 / mse), PSNR_CAP)


def nanmean(x) -> float:
    x = np.asarray(x, np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


# -- the evaluation ---------------------------------------------------------------------------------
class Evaluation:
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
        self.run_dataset = self.split.get("dataset") or run_cfg.get("dataset")
        dataset_path = cfg.dataset or self.run_dataset
        if not dataset_path:
            raise RunError(f"{self.run.path}: config.yaml names no dataset; set dataset=...")
        self.dataset = open_run_dataset(dataset_path, self.split)
        own_paths = {Path(p).resolve() for p in (run_cfg.get("dataset"), self.split.get("dataset")) if p}
        self.own_dataset = self.dataset.root.resolve() in own_paths
        if self.own_dataset:
            self.check_split(self.dataset)
            self.held_out = list(self.split["held_out"])
            self.scored = f"the run's {len(self.held_out)} held-out episodes (split.json)"
        else:
            self.held_out = list(range(self.dataset.num_episodes))
            self.scored = f"all {self.dataset.num_episodes} episodes (not the run's dataset)"
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
        self.k, self.c = mc.frame_skip, mc.context_length - 1
        self.arrays: EpisodeArrays = self.dataset.load_arrays()
        self.distance = make_distance(cfg.perception)
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

    def kind(self, e: int) -> str:
        return self.dataset.episodes[e].kind

    @torch.no_grad()
    def perceptual(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(a), 32):
            out.append(self.distance.compare(self.distance.embed(a[s : s + 32]), self.distance.embed(b[s : s + 32])))
        return torch.cat(out).float().cpu().numpy() if out else np.zeros(0)

    @torch.no_grad()
    def reconstruct(self, frames: np.ndarray) -> np.ndarray:
        out = np.empty_like(frames)
        for s in range(0, len(frames), 128):
            out[s : s + 128] = self.model.decode(self.model.tokens(frames[s : s + 128])).cpu().numpy()
        return out

    # -- open loop ------------------------------------------------------------------------------
    def open_loop(self) -> dict:
        """Rollouts per held-out episode; per-horizon metrics and per-window records."""
        groups: dict[int, list[tuple[int, int]]] = defaultdict(list)  # own horizon -> (episode, start)
        for e in self.held_out:
            room = world_frames(int(self.arrays.lengths[e]), self.k) - self.c
            fitting = [h for h in self.horizons if h <= room]
            if not fitting:
                continue
            eps, starts = spread_windows(self.arrays, [e], self.c, fitting[-1], self.k, self.cfg.windows_per_episode)
            groups[fitting[-1]] += list(zip(eps.tolist(), starts.tolist()))
        records: dict[int, dict[str, list]] = {h: defaultdict(list) for h in self.horizons}
        dream_done: list[tuple[float, float]] = []
        bar = tqdm(
            total=sum(len(v) for v in groups.values()),
            desc="evaluate-wm: open-loop rollouts",
            disable=not self.cfg.progress,
            dynamic_ncols=True,
            unit="window",
        )
        for own, members in sorted(groups.items()):
            eps = np.array([m[0] for m in members], np.int64)
            w = gather(self.arrays, eps, np.array([m[1] for m in members], np.int64), self.c, own, self.k)
            dreamed, done = rollout(self.model, w.context, w.context_actions, w.actions, self.cfg.batch_size)
            shuffled = None
            if len(w) >= 2:
                order = self.rng.permutation(len(w))
                perm = np.empty(len(w), np.int64)
                perm[order] = np.roll(order, 1)  # a derangement: no window keeps its own actions
                shuffled, _ = rollout(self.model, w.context, w.context_actions, w.actions[perm], self.cfg.batch_size)
            dream_done += list(zip(done.ravel().tolist(), w.done.ravel().tolist()))
            last = w.context[:, -1]
            for h in (h for h in self.horizons if h <= own):
                truth, pred = w.truth[:, h - 1], dreamed[:, h - 1]
                r = records[h]
                r["kind"] += [self.kind(e) for e in eps]
                r["episode"] += eps.tolist()
                r["psnr"] += capped_psnr(pred, truth).tolist()
                r["psnr_copy"] += capped_psnr(last, truth).tolist()
                r["psnr_recon"] += capped_psnr(self.reconstruct(truth), truth).tolist()
                r["psnr_shuffled"] += (
                    capped_psnr(shuffled[:, h - 1], truth).tolist() if shuffled is not None else [float("nan")] * len(w)
                )
                r["ssim"] += ssim(pred, truth).numpy().tolist()
                r["ssim_copy"] += ssim(last, truth).numpy().tolist()
                r["perceptual"] += self.perceptual(pred, truth).tolist()
                r["perceptual_copy"] += self.perceptual(last, truth).tolist()
                changed = np.abs(truth.astype(np.int16) - last.astype(np.int16)).max(-1) > self.cfg.change_threshold
                r["changed_share"] += changed.mean((1, 2)).tolist()
                r["psnr_changed"] += masked_psnr(pred, truth, changed).tolist()
                r["psnr_changed_copy"] += masked_psnr(last, truth, changed).tolist()
                r["identical_copy"] += (last == truth).all((1, 2, 3)).tolist()
            bar.update(len(w))
        bar.close()
        table = {}
        for h, r in records.items():
            if not r["psnr"]:
                continue
            p, pc, ps = (np.asarray(r[key]) for key in ("psnr", "psnr_copy", "psnr_shuffled"))
            table[h] = {
                "windows": len(p),
                "episodes": len(set(r["episode"])),
                "kinds": {k: r["kind"].count(k) for k in sorted(set(r["kind"]))},
                "psnr": nanmean(p),
                "psnr_copy_last": nanmean(pc),
                "psnr_gain": nanmean(p - pc),
                "psnr_tokenizer_ceiling": nanmean(r["psnr_recon"]),
                "psnr_shuffled_actions": nanmean(ps),
                "dpsnr": nanmean(p - ps),
                "ssim": nanmean(r["ssim"]),
                "ssim_copy_last": nanmean(r["ssim_copy"]),
                "perceptual": nanmean(r["perceptual"]),
                "perceptual_copy_last": nanmean(r["perceptual_copy"]),
                "psnr_changed": nanmean(r["psnr_changed"]),
                "psnr_changed_copy_last": nanmean(r["psnr_changed_copy"]),
                "changed_pixel_share": nanmean(r["changed_share"]),
                "identical_to_copy_last": int(np.sum(r["identical_copy"])),
                "by_kind": {
                    k: {"windows": int(m.sum()), "psnr_gain": nanmean((p - pc)[m]), "dpsnr": nanmean((p - ps)[m])}
                    for k in sorted(set(r["kind"]))
                    for m in [np.array([x == k for x in r["kind"]])]
                },
            }
        scores, labels = (np.array([d[i] for d in dream_done]) for i in (0, 1))
        positive = labels >= 0.5
        dream = {
            "frames": len(scores),
            "positives": int(positive.sum()),
            "auroc": auroc(scores[positive], scores[~positive]),
        }
        return {"horizons": table, "done_on_dreamed_frames": dream}

    @torch.no_grad()
    def change_rates(self) -> dict:
        """Shares of token ids, 8x8 patches and pixels that change between consecutive world-model frames
        of the held-out episodes. Token ids as the dynamics reads them: `window_tokens` of context_length
        windows (consecutive windows share a frame, so each pair of frames counts once); `tokens_per_frame`:
        each frame's own ids."""
        T, grid, threshold = self.model.cfg.context_length, self.model.grid, self.cfg.change_threshold
        changed: dict[str, float] = defaultdict(float)
        pairs = 0
        for e in self.held_out:
            s, n = int(self.arrays.starts[e]), int(self.arrays.lengths[e])
            frames = self.arrays.frames[s : s + n : self.k]
            if len(frames) < 2:
                continue
            ids = self.model.tokens(frames)  # [t,N]
            changed["tokens_per_frame"] += float((ids[1:] != ids[:-1]).float().mean(-1).sum())
            for w in range(0, len(frames) - 1, T - 1):
                held = self.model.window_tokens(frames[w : w + T], ids[w : w + T])
                changed["tokens"] += float((held[1:] != held[:-1]).float().mean(-1).sum())
            moved = np.abs(frames[1:].astype(np.int16) - frames[:-1].astype(np.int16)).max(-1) > threshold  # [t-1,H,W]
            changed["pixels"] += float(moved.mean((1, 2)).sum())
            patches = moved.reshape(len(moved), grid, moved.shape[1] // grid, grid, moved.shape[2] // grid)
            changed["patches"] += float(patches.any((2, 4)).mean((1, 2)).sum())
            pairs += len(moved)
        rates = {
            key: changed[key] / pairs if pairs else float("nan")
            for key in ("tokens", "tokens_per_frame", "patches", "pixels")
        }
        return {
            **rates,
            "frame_pairs": pairs,
            "token_hold_threshold": self.model.cfg.token_hold_threshold,
            "change_threshold": threshold,
        }

    # -- done head on real frames -----------------------------------------------------------------
    @torch.no_grad()
    def done_head(self) -> dict:
        T, k = self.model.cfg.context_length, self.k
        probs, labels, kinds, episodes = [np.empty(0, np.float32)], [np.empty(0, np.float32)], [], []
        labelled = [e for e in self.held_out if self.dataset.episodes[e].labelled]  # others have no done labels
        for e in tqdm(
            labelled,
            desc="evaluate-wm: done head",
            disable=not self.cfg.progress,
            dynamic_ncols=True,
            unit="episode",
        ):
            s, n = int(self.arrays.starts[e]), int(self.arrays.lengths[e])
            tokens = self.model.tokens(self.arrays.frames[s : s + n]).cpu()  # [n,N], each frame encoded once
            actions = self.arrays.actions[s : s + n]
            by_length: dict[int, list[int]] = defaultdict(list)
            for t in range(n):
                by_length[min(T, t // k + 1)].append(t)
            p = np.empty(n, np.float32)
            for m, ts in by_length.items():
                ts_a = np.array(ts)
                rows = ts_a[:, None] - k * np.arange(m - 1, -1, -1)  # [b,m] frames ending at t
                acts = (
                    skip_actions(actions[ts_a[:, None] - k * (m - 1) + np.arange((m - 1) * k)], k)
                    if m > 1
                    else np.zeros((len(ts), 0, actions.shape[-1]), np.float32)
                )
                for b in range(0, len(ts), 256):
                    out = self.model.done_probability(
                        self.arrays.frames[s + rows[b : b + 256]], acts[b : b + 256], tokens=tokens[rows[b : b + 256]]
                    )
                    p[ts_a[b : b + 256]] = out[:, -1].float().cpu().numpy()
            probs.append(p)
            labels.append(self.arrays.done[s : s + n])
            kinds += [self.kind(e)] * n
            episodes += [e] * n
        prob, label = np.concatenate(probs), np.concatenate(labels)
        kinds_a, eps_a = np.array(kinds), np.array(episodes)
        positive = label >= 0.5
        threshold = self.model.cfg.done_threshold
        out = {
            "frames": len(prob),
            "unlabelled_episodes_skipped": len(self.held_out) - len(labelled),
            "positives": int(positive.sum()),
            "auroc": auroc(prob[positive], prob[~positive]),
            "accuracy_at_0.5": float(((prob >= 0.5) == positive).mean()) if len(prob) else float("nan"),
            "threshold": threshold,
            "tpr_at_threshold": float((prob[positive] >= threshold).mean()) if positive.any() else float("nan"),
            "fpr_at_threshold_negatives": float((prob[~positive] >= threshold).mean())
            if (~positive).any()
            else float("nan"),
        }
        success = np.array([self.dataset.episodes[e].success for e in eps_a])
        for kind in FAILURE_KINDS:
            mask = (kinds_a == kind) & ~success  # kind says how it was made; a lucky success is no failure
            fired = [bool((prob[eps_a == e] >= threshold).any()) for e in np.unique(eps_a[mask])]
            out[f"fpr_{kind}"] = {
                "frames": int(mask.sum()),
                "episodes": len(fired),
                "frame_fpr": float((prob[mask] >= threshold).mean()) if mask.any() else float("nan"),
                "episode_fpr": float(np.mean(fired)) if fired else float("nan"),
                "max_probability": float(prob[mask].max()) if mask.any() else float("nan"),
            }
        succ_eps = np.unique(eps_a[success])
        fired_near_end = {int(e): bool((prob[(eps_a == e) & positive] >= threshold).any()) for e in succ_eps}
        out["successful_episodes_fired_near_end"] = (
            float(np.mean(list(fired_near_end.values()))) if fired_near_end else float("nan")
        )
        by_task: dict[str, list[bool]] = defaultdict(list)
        for e, fired in fired_near_end.items():
            by_task[self.dataset.episodes[e].task].append(fired)
        out["successful_episodes_fired_near_end_by_task"] = {
            task: {"episodes": len(f), "fired": float(np.mean(f))} for task, f in sorted(by_task.items())
        }
        out["successful_episodes_fired_early"] = (
            float(np.mean([bool((prob[(eps_a == e) & ~positive] >= threshold).any()) for e in succ_eps]))
            if len(succ_eps)
            else float("nan")
        )
        self._roc = roc_curve(prob, positive) if positive.any() and (~positive).any() else None
        return out

    # -- goal model -------------------------------------------------------------------------------
    @torch.no_grad()
    def goal_model(self) -> tuple[dict, dict]:
        ds, a = self.dataset, self.arrays
        final = lambda e: a.frames[a.starts[e] + a.lengths[e] - 1]  # noqa: E731
        if saved_step(self.run.path, "goal") == 0:
            return {"episodes": 0, "trained": False}, {}
        successes = [e for e in self.held_out if ds.episodes[e].success]
        if not successes:
            return {"episodes": 0, "trained": True}, {}
        mean_final, mean_source = self.task_mean_finals({ds.episodes[e].task for e in successes})
        steps = self.cfg.goal_max_steps or max(int(a.lengths[e]) for e in successes) // self.k + 4
        first = np.stack([a.frames[a.starts[e]] for e in successes])
        truth = np.stack([final(e) for e in successes])
        imagined = self.model.imagine_goal(first, [ds.episodes[e].instruction for e in successes], max_steps=steps)
        goal = imagined.goal.cpu().numpy()
        has_mean = np.array([ds.episodes[e].task in mean_final for e in successes])
        mean = np.stack([mean_final.get(ds.episodes[e].task, first[i]) for i, e in enumerate(successes)])
        success_frame = [int(np.argmax(a.done[a.starts[e] : a.starts[e] + a.lengths[e]] >= 1.0)) for e in successes]
        by_task = defaultdict(list)
        for i, e in enumerate(successes):
            by_task[ds.episodes[e].task].append(i)
        d_goal, d_mean, d_first = (
            self.perceptual(goal, truth),
            self.perceptual(mean, truth),
            self.perceptual(first, truth),
        )
        p_goal, p_mean, p_first = capped_psnr(goal, truth), capped_psnr(mean, truth), capped_psnr(first, truth)
        out = {
            "episodes": len(successes),
            "trained": True,
            "max_steps": steps,
            "fired": float(imagined.fired.float().mean()),
            "goal_step_control_steps": float(imagined.goal_step.float().mean()) * self.k,
            "true_success_frame": float(np.mean(success_frame)),
            "perceptual_goal": nanmean(d_goal),
            "perceptual_task_mean_final": nanmean(d_mean[has_mean]),
            "perceptual_first_frame": nanmean(d_first),
            "psnr_goal": nanmean(p_goal),
            "psnr_task_mean_final": nanmean(p_mean[has_mean]),
            "psnr_first_frame": nanmean(p_first),
            "task_mean_final_source": mean_source,
            "goal_closer_than_mean_final": float(np.mean((d_goal < d_mean)[has_mean]))
            if has_mean.any()
            else float("nan"),
            "by_task": {
                t: {
                    "episodes": len(ix),
                    "perceptual_goal": nanmean(d_goal[ix]),
                    "perceptual_task_mean_final": nanmean(d_mean[ix]),
                    "fired": float(imagined.fired[ix].float().mean()),
                }
                for t, ix in sorted(by_task.items())
            },
        }
        return out, {"episodes": successes, "imagined": imagined}

    def task_mean_finals(self, tasks: set[str]) -> tuple[dict[str, np.ndarray], str]:
        """Each task's mean final frame over the successful episodes of the run's training split (from the
        run's dataset), and where they come from: n/a with the reason when that dataset does not open."""
        if self.own_dataset:
            dataset, arrays = self.dataset, self.arrays
        elif not self.run_dataset:
            return {}, "n/a: the run names no dataset"
        else:
            try:
                dataset = open_run_dataset(self.run_dataset, self.split)
                self.check_split(dataset)
            except (DatasetError, RunError) as err:
                return {}, f"n/a: the run's dataset does not open ({err})"
            arrays = dataset.load_arrays()
        means = {}
        for task in tasks:
            finals = [
                arrays.frames[arrays.starts[e] + arrays.lengths[e] - 1]
                for e in self.split["train"]
                if dataset.episodes[e].success and dataset.episodes[e].task == task
            ]
            if finals:
                means[task] = np.mean(np.stack(finals).astype(np.float32), 0).round().astype(np.uint8)
        return means, f"the run's training split of {dataset.root}"

    def gif(self, goal_data: dict) -> Path | None:
        """real | dreamed (open loop from the first context frames, true actions) | goal model."""
        all_episodes = goal_data.get("episodes", [])
        if not all_episodes:
            return None
        rows = []
        for i in spread(list(range(len(all_episodes))), self.cfg.examples):
            e = all_episodes[i]
            n = world_frames(int(self.arrays.lengths[e]), self.k)
            real = self.arrays.frames[self.arrays.starts[e] : self.arrays.starts[e] + self.arrays.lengths[e] : self.k]
            if n > self.c:
                w = gather(self.arrays, np.array([e]), np.array([0]), self.c, n - self.c, self.k)
                dreamed, _ = rollout(self.model, w.context, w.context_actions, w.actions)
                dreamed = np.concatenate([w.context[0], dreamed[0]])
            else:
                dreamed = real
            imagined = goal_data["imagined"]
            goal_clip = imagined.frames[i, : int(imagined.goal_step[i]) + 1].cpu().numpy()
            rows.append([real, dreamed, goal_clip])
        labels = ["real", f"dreamed (after {self.c} real)", "goal model"]
        return write_gif(self.out / "real_dream_goal.gif", labelled_grid(rows, labels), 5.0)

    def plots(self, open_loop: dict) -> list[str]:
        table = open_loop["horizons"]
        hs = sorted(table)
        files = []
        series = {
            "world model": (hs, [table[h]["psnr"] for h in hs]),
            "copy last frame": (hs, [table[h]["psnr_copy_last"] for h in hs]),
            "shuffled actions": (hs, [table[h]["psnr_shuffled_actions"] for h in hs]),
            "tokenizer ceiling": (hs, [table[h]["psnr_tokenizer_ceiling"] for h in hs]),
        }
        line_plot(
            self.out / "psnr_vs_horizon.png",
            series,
            "open-loop PSNR on held-out episodes",
            "horizon (world-model steps)",
            "PSNR dB",
        )
        files.append("psnr_vs_horizon.png")
        if getattr(self, "_roc", None) is not None:
            fpr, tpr = self._roc
            line_plot(
                self.out / "done_roc.png",
                {"done head (real frames)": (fpr.tolist(), tpr.tolist())},
                "done head ROC, held-out frames (label >= 0.5 positive)",
                "false-positive rate",
                "true-positive rate",
                diagonal=True,
            )
            files.append("done_roc.png")
        return files


def _finite(x):
    """JSON-safe copy: NaN and infinities become null, numpy scalars plain numbers, keys strings."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _f(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def report(metrics: dict, plots: list[str], gif: Path | None) -> str:
    m = metrics
    ol, done, goal = m["open_loop"]["horizons"], m["done_head"], m["goal_model"]
    lines = [
        f"# World model evaluation: `{m['run']}`",
        "",
        f"Checkpoint `{m['checkpoint']}`; dataset `{m['dataset']}`; scored: {m['episodes_scored']} "
        f"({m['held_out_kinds']}). Model: {m['model']['params_m']:.2f}M parameters, {m['model']['image_size']}px "
        f"frames, {m['model']['context_length'] - 1} context frames, one step = {m['model']['frame_skip']} control "
        f"steps, {m['model']['decode_steps']} MaskGIT decoding steps per frame in {m['model']['precision']}. "
        "Perceptual distance: "
        f"**{m['perceptual_backend']}** ({m['perceptual_note']}). "
        f"Evaluation took {m['seconds']:.0f} s on {m['device']}.",
        "",
        "## Headline",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    h8 = ol.get(8) or ol.get(max(ol)) if ol else None
    h_key = 8 if 8 in ol else (max(ol) if ol else None)
    if h8:
        lines += [
            f"| {h_key}-step open-loop PSNR gain over copy-last-frame | {_f(h8['psnr_gain'])} dB "
            f"({_f(h8['psnr'])} vs {_f(h8['psnr_copy_last'])}) |",
            f"| {h_key}-step controllability dPSNR (true - shuffled actions) | {_f(h8['dpsnr'])} dB |",
        ]
    lines += [
        f"| done AUROC, real held-out frames (label >= 0.5 positive) | {_f(done['auroc'], 3)} |",
        f"| done false-positive rate (p >= {done['threshold']}), failed episodes: frames / episodes | "
        f"{_f(done['fpr_failed']['frame_fpr'], 3)} / {_f(done['fpr_failed']['episode_fpr'], 2)} "
        f"({done['fpr_failed']['episodes']} episodes) |",
        f"| done false-positive rate (p >= {done['threshold']}), random episodes: frames / episodes | "
        f"{_f(done['fpr_random']['frame_fpr'], 3)} / {_f(done['fpr_random']['episode_fpr'], 2)} "
        f"({done['fpr_random']['episodes']} episodes) |",
    ]
    if goal.get("episodes"):
        lines += [
            f"| goal model: {m['perceptual_backend']} distance to the true final frame (lower is better) | "
            f"{_f(goal['perceptual_goal'], 3)} vs task mean final frame {_f(goal['perceptual_task_mean_final'], 3)}"
            f" (first frame {_f(goal['perceptual_first_frame'], 3)}) |"
        ]
    lines += [
        "",
        "## Open-loop rollouts",
        "",
        "Frame h steps ahead of the last real context frame; means over windows. `ceiling`: the tokenizer's "
        "reconstruction of the true frame. Changed pixels: where the true frame differs from the last context "
        f"frame by more than {m['config']['change_threshold']}/255 in a channel.",
        "",
        "| h | windows (episodes) | PSNR | copy-last | gain | ceiling | shuffled | dPSNR | SSIM / copy | "
        f"{m['perceptual_backend']} / copy | PSNR changed px / copy | changed px |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for h in sorted(ol):
        r = ol[h]
        lines.append(
            f"| {h} | {r['windows']} ({r['episodes']}) | {_f(r['psnr'])} | {_f(r['psnr_copy_last'])} | "
            f"{_f(r['psnr_gain'])} | {_f(r['psnr_tokenizer_ceiling'])} | {_f(r['psnr_shuffled_actions'])} | "
            f"{_f(r['dpsnr'])} | {_f(r['ssim'], 3)} / {_f(r['ssim_copy_last'], 3)} | "
            f"{_f(r['perceptual'], 3)} / {_f(r['perceptual_copy_last'], 3)} | "
            f"{_f(r['psnr_changed'])} / {_f(r['psnr_changed_copy_last'])} | {_f(100 * r['changed_pixel_share'], 1)}% |"
        )
    cr = m["change_rates"]
    lines += [
        "",
        f"Change between consecutive world-model frames ({cr['frame_pairs']} pairs): token ids the dynamics "
        f"reads {_f(100 * cr['tokens'], 1)}% (token_hold_threshold {cr['token_hold_threshold']}; each frame's "
        f"own ids {_f(100 * cr['tokens_per_frame'], 1)}%), 8x8 patches {_f(100 * cr['patches'], 1)}%, pixels "
        f"{_f(100 * cr['pixels'], 1)}% (changed: a channel by more than {cr['change_threshold']}/255).",
    ]
    kinds = [k for k in KINDS if any(k in ol[h]["by_kind"] for h in ol)]
    lines += [
        "",
        "By episode kind (PSNR gain over copy-last / dPSNR, dB):",
        "",
        "| h | " + " | ".join(kinds) + " |",
        "|---" * (len(kinds) + 1) + "|",
    ]
    for h in sorted(ol):
        cells = []
        for kind in kinds:
            b = ol[h]["by_kind"].get(kind)
            cells.append(f"{_f(b['psnr_gain'])} / {_f(b['dpsnr'])} (n={b['windows']})" if b else "-")
        lines.append(f"| {h} | " + " | ".join(cells) + " |")
    dd = m["open_loop"]["done_on_dreamed_frames"]
    lines += [
        "",
        "## Done head",
        "",
        f"Real held-out frames: {done['frames']} ({done['positives']} with label >= 0.5). AUROC "
        f"{_f(done['auroc'], 3)}, accuracy at p = 0.5 {_f(done['accuracy_at_0.5'], 3)}; at the done threshold "
        f"{done['threshold']}: true-positive rate {_f(done['tpr_at_threshold'], 3)}, false-positive rate on "
        f"label < 0.5 frames {_f(done['fpr_at_threshold_negatives'], 4)}.",
        "",
        "| episodes | frames | frames with p >= threshold | episodes where done fires | max p |",
        "|---|---|---|---|---|",
    ]
    for kind in FAILURE_KINDS:
        f = done[f"fpr_{kind}"]
        lines.append(
            f"| {kind} ({f['episodes']}) | {f['frames']} | {_f(f['frame_fpr'], 4)} | {_f(f['episode_fpr'], 2)} | "
            f"{_f(f['max_probability'], 3)} |"
        )
    lines += [
        "",
        f"Successful held-out episodes where done fires on a label >= 0.5 frame: "
        f"{_f(done['successful_episodes_fired_near_end'], 2)}; where it fires earlier (label < 0.5): "
        f"{_f(done['successful_episodes_fired_early'], 2)}. By task (near the end): "
        + (
            ", ".join(
                f"{task} {_f(t['fired'], 2)} of {t['episodes']}"
                for task, t in done["successful_episodes_fired_near_end_by_task"].items()
            )
            or "no successful episode"
        )
        + ".",
        f"On the open-loop rollouts' dreamed frames ({dd['frames']} frames, {dd['positives']} positive): "
        f"AUROC {_f(dd['auroc'], 3)}.",
        "",
    ]
    if goal.get("episodes"):
        lines += [
            "## Goal model",
            "",
            f"{goal['episodes']} successful held-out episodes, imagined from frame 0 and the instruction for up to "
            f"{goal['max_steps']} steps. Done fired in {_f(100 * goal['fired'], 0)}% of them, at control step "
            f"{_f(goal['goal_step_control_steps'], 0)} on average (true first success: frame "
            f"{_f(goal['true_success_frame'], 0)}).",
            "",
            f"| goal frame vs true final frame | {m['perceptual_backend']} distance | PSNR |",
            "|---|---|---|",
            f"| goal model | {_f(goal['perceptual_goal'], 3)} | {_f(goal['psnr_goal'])} |",
            f"| task mean final frame ({goal['task_mean_final_source']}) | "
            f"{_f(goal['perceptual_task_mean_final'], 3)} | "
            f"{_f(goal['psnr_task_mean_final'])} |",
            f"| first frame | {_f(goal['perceptual_first_frame'], 3)} | {_f(goal['psnr_first_frame'])} |",
            "",
            f"The goal frame is closer than the task's mean final frame in "
            f"{_f(100 * goal['goal_closer_than_mean_final'], 0)}% of episodes.",
            "",
            "| task | episodes | goal model | task mean final | done fired |",
            "|---|---|---|---|---|",
        ]
        for task, t in goal["by_task"].items():
            lines.append(
                f"| {task} | {t['episodes']} | {_f(t['perceptual_goal'], 3)} | "
                f"{_f(t['perceptual_task_mean_final'], 3)} | {_f(100 * t['fired'], 0)}% |"
            )
        lines.append("")
    else:
        lines += [
            "## Goal model",
            "",
            "None: the run trained no goal stage (model.train.goal_steps=0)."
            if not goal["trained"]
            else "Not scored: no scored episode is a success.",
            "",
        ]
    lines += controllability_lines(m["controllability"])
    lines += ["## Pictures", ""]
    lines += [f"![{p}]({p})" for p in plots]
    if gif is not None:
        lines += ["", f"![real | dreamed | goal]({gif.name})"]
    lines += [
        "",
        "Definitions: module docstring of `roboscape_r_ros/commands/evaluate_wm.py`. Per-image PSNR is "
        f"capped at {PSNR_CAP:g} dB.",
        "",
    ]
    return "\n".join(lines)


def controllability_lines(sheet: dict) -> list[str]:
    if not sheet["contexts"]:
        return ["## Controllability", "", "No scored episode holds a context window.", ""]
    contexts = ", ".join(f"{c['task']} episode {c['episode']} from frame {c['start']}" for c in sheet["contexts"])
    lines = [
        "## Controllability",
        "",
        f"From real contexts ({contexts}) the model imagines {sheet['steps']} steps ({sheet['control_steps']} "
        "control steps) under each held action. Divergence: mean absolute pixel difference (0-255) of the final "
        "dreamed frame from the other held actions' final frames (near 0: the model ignores the action); "
        f"change: from the last context frame. Mean over pairs: **{_f(sheet['mean_pairwise_divergence'])}**.",
        "",
        "| held action | divergence | change |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {_f(v['divergence'])} | {_f(v['change'])} |" for label, v in sheet["held_actions"].items()]
    return lines + ["", f"![controllability]({SHEET_PNG})", "", f"![held actions side by side]({SHEET_GIF})", ""]


@dataclass(frozen=True)
class WorldModelEvaluation:
    report: Path  # report.md; metrics.json beside it
    metrics: dict[str, Any]  # what metrics.json holds

    def __str__(self) -> str:
        ol, done, goal = self.metrics["open_loop"]["horizons"], self.metrics["done_head"], self.metrics["goal_model"]
        h = 8 if 8 in ol else (max(ol) if ol else None)
        head = f"{h}-step PSNR gain {_f(ol[h]['psnr_gain'])} dB, dPSNR {_f(ol[h]['dpsnr'])} dB; " if h else ""
        goal_text = (
            f"{_f(goal.get('perceptual_goal'), 3)} vs mean final {_f(goal.get('perceptual_task_mean_final'), 3)}"
            if goal["trained"]
            else "none (the run trained no goal stage)"
        )
        return (
            f"report   {self.report}\n"
            f"metrics  {self.report.with_name('metrics.json')}\n"
            f"summary  {head}done AUROC {_f(done['auroc'], 3)}, done FPR failed/random episodes "
            f"{_f(done['fpr_failed']['episode_fpr'])}/{_f(done['fpr_random']['episode_fpr'])}; goal model {goal_text}"
        )


def run_evaluate_wm(cfg: EvaluateWMConfig) -> WorldModelEvaluation:
    start = time.perf_counter()
    ev = Evaluation(cfg)
    ev.model.eval()
    open_loop = ev.open_loop()
    change_rates = ev.change_rates()
    done = ev.done_head()
    goal, goal_data = ev.goal_model()
    gif = ev.gif(goal_data)
    plots = ev.plots(open_loop)
    sheet = controllability_sheet(ev.model, ev.dataset, ev.held_out, ev.out, cfg.sheet_steps, cfg.sheet_contexts)
    mc = ev.model.cfg
    held_kinds = defaultdict(int)
    for e in ev.held_out:
        held_kinds[ev.kind(e)] += 1
    backend = ev.distance.name
    metrics = {
        "run": str(ev.run.path),
        "checkpoint": str(ev.checkpoint),
        "dataset": str(ev.dataset.root),
        "device": str(ev.device),
        "seconds": time.perf_counter() - start,
        "episodes_scored": ev.scored,
        "held_out_episodes": len(ev.held_out),
        "held_out_kinds": ", ".join(f"{k} {v}" for k, v in sorted(held_kinds.items())),
        "model": {
            "params_m": sum(p.numel() for p in ev.model.parameters()) / 1e6,
            "image_size": mc.image_size,
            "context_length": mc.context_length,
            "frame_skip": mc.frame_skip,
            "decode_steps": mc.dynamics.decode_steps,
            "precision": ev.model.precision,
        },
        "perceptual_backend": backend,
        "perceptual_note": {
            "effnet": "EfficientNet-Lite0 ImageNet features, LPIPS-style, uncalibrated",
            "lpips": "LPIPS-AlexNet v0.1",
            "ssim": "1 - SSIM",
        }.get(backend, backend),
        "config": {
            "horizons": ev.horizons,
            "windows_per_episode": cfg.windows_per_episode,
            "change_threshold": cfg.change_threshold,
            "seed": cfg.seed,
        },
        "open_loop": open_loop,
        "change_rates": change_rates,
        "done_head": done,
        "goal_model": goal,
        "controllability": sheet,
    }
    metrics["seconds"] = time.perf_counter() - start
    write_atomic(ev.out / "metrics.json", json.dumps(_finite(metrics), indent=2) + "\n")
    text = report(metrics, plots, gif)
    write_atomic(ev.out / "report.md", text)
    return WorldModelEvaluation(ev.out / "report.md", metrics)
