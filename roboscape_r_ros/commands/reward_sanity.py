"""Reward sanity on real held-out episodes: does the endogenous reward rise toward success, and does the
done head fire near the real success frame?

    roboscape-r reward-sanity run=outputs/runs/wm3_cpu            # -> <run>/reward_sanity/{report.md,json,png}

For every held-out episode of a world-model run, the real frames are taken `frame_skip` apart (the
world model's step) and scored against a goal frame, per goal source:
    goal_model  the goal world model's imagined goal from the episode's first frame and instruction
    demo        the last frame of another successful episode of the same task (the episode's own last
                frame would make the test circular; used only when the task has no other success)
Per successful episode: Spearman rank correlation of the alignment 1 - D and of the full reward with
time (frames up to the first success frame, where the done label reaches 1; time there equals
progress), and where the done probability (done head over sliding windows of real frames, each
frame seeing at most context_length frames up to itself) first reaches the threshold, in control
steps relative to the real success frame (negative: early). Failed and random episodes give the false
fire rate and the reward-vs-success agreement: the AUROC of the last frame's alignment separating
successful from unsuccessful episodes of a task (0.5: no better than chance).
Every number names the perceptual distance backend that produced it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.data.reader import EpisodeDataset, open_run_dataset
from roboscape_r_ros.files import write_atomic
from roboscape_r_ros.imagination.env import SPLIT_FILE, check_world_model, context_episodes, resolve_world_model
from roboscape_r_ros.imagination.errors import ImaginationError
from roboscape_r_ros.imagination.goals import model_goal_bank
from roboscape_r_ros.imagination.reward import EndogenousReward, RewardConfig
from roboscape_r_ros.markdown import number, table
from roboscape_r_ros.stats import auroc, spearman
from roboscape_r_ros.world_model.config import InferenceConfig
from roboscape_r_ros.world_model.model import WorldModel

GOAL_SOURCES = ("goal_model", "demo")


@dataclass
class RewardSanityConfig:
    run: str = option("", help="world-model run folder (world_model.safetensors + split.json) or a checkpoint file")
    dataset: str = option("", help="dataset (default: the one the run's split.json names)")
    episodes: Literal["held_out", "all"] = option("held_out", help="episodes to score: the run's held-out ones or all")
    goals: list[str] = option(list(GOAL_SOURCES), help="goal sources to score against: goal_model, demo")
    reward: RewardConfig = option(RewardConfig(), help="endogenous reward (perceptual backend, bonus, threshold)")
    goal_max_steps: int = option(
        0, help="goal_model: imagined steps at most (0: the longest episode in world-model steps + 4)"
    )
    output: str = option("", help="output folder (default: <run folder>/reward_sanity)")
    device: str = option("cpu", help="torch device")
    threads: int = option(0, help="torch CPU threads (0: torch's default)")
    seed: int = option(0, help="seed of the demo-goal choice")
    inference: InferenceConfig = option(
        InferenceConfig(), help="how the world model imagines goals and the reward's perceptual network runs"
    )
    progress: bool = option(True, help="show a progress bar")

    def __post_init__(self) -> None:
        bad = [g for g in self.goals if g not in GOAL_SOURCES]
        if bad or not self.goals:
            raise ConfigError(f"goals must be a non-empty list of {', '.join(GOAL_SOURCES)}, got {self.goals}")


@torch.no_grad()
def sliding_done(wm: WorldModel, frames: np.ndarray, actions: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Done probability [n] of each of n world-model frames [n,H,W,3] (actions between them [n-1,A]);
    frame t sees frames max(0, t-L+1)..t (L = context_length), as the done head was trained."""
    n, L = len(frames), wm.cfg.context_length
    first = min(n, L)
    out = np.empty(n, np.float32)
    out[:first] = wm.done_probability(frames[None, :first], actions[None, : first - 1])[0].float().cpu().numpy()
    ends = np.arange(L, n)  # windows ending at t >= L
    for begin in range(0, len(ends), batch_size):
        t = ends[begin : begin + batch_size]
        rows = t[:, None] - L + 1 + np.arange(L)  # [b,L]
        done = wm.done_probability(frames[rows], actions[rows[:, :-1]])  # [b,L]
        out[t] = done[:, -1].float().cpu().numpy()
    return out


def success_frame(done_labels: np.ndarray) -> int:
    """Recorded frame of the first success: where the self-supervised done label reaches 1."""
    hits = np.flatnonzero(done_labels >= 1.0 - 1e-4)
    return int(hits[0]) if hits.size else len(done_labels) - 1


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _nanmean(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def reward_sanity(
    wm: WorldModel, dataset: EpisodeDataset, episodes: list[int], cfg: RewardSanityConfig, distance=None
) -> dict[str, Any]:
    """Score ``episodes`` (dataset indices) of ``dataset`` with ``wm``'s reward; returns the JSON report."""
    check_world_model(wm, dataset)
    arrays = dataset.load_arrays()
    k, threshold = wm.cfg.frame_skip, cfg.reward.done_threshold
    reward = EndogenousReward(cfg.reward, 1, wm.device, distance)
    rng = np.random.default_rng(cfg.seed)
    last_row = arrays.starts + arrays.lengths - 1
    successes_of: dict[str, list[int]] = {}
    for meta in dataset.episodes:
        if meta.success:
            successes_of.setdefault(meta.task, []).append(meta.index)
    usable = [e for e in episodes if arrays.lengths[e] >= 2 * k + 1]  # at least 3 world-model frames
    if not usable:
        raise ImaginationError(f"{dataset.root}: no episode to score (need {2 * k + 1} frames or more)")
    if not any(dataset.episodes[e].success for e in usable):
        raise ImaginationError(
            f"{dataset.root}: none of the {len(usable)} episodes scored succeeded; reward sanity "
            "needs successful held-out episodes"
        )
    imagined: dict[int, tuple[torch.Tensor, bool, int]] = {}
    if "goal_model" in cfg.goals:  # one batched rollout of the goal model for all episodes (greedy: deterministic)
        max_steps = cfg.goal_max_steps or int(max(arrays.lengths[usable]) - 1) // k + 4
        first = torch.as_tensor(arrays.frames[arrays.starts[usable]], device=wm.device)
        bank = model_goal_bank(wm, first, [dataset.episodes[e].instruction for e in usable], max_steps)
        assert bank.fired is not None and bank.steps is not None, "a goal-model bank has both"
        for i, e in enumerate(usable):
            imagined[e] = (bank.frames[i : i + 1], bool(bank.fired[i]), int(bank.steps[i]))
    records: list[dict[str, Any]] = []
    for e in tqdm(usable, desc="reward sanity", unit="episode", disable=not cfg.progress):
        meta = dataset.episodes[e]
        start, length = int(arrays.starts[e]), int(arrays.lengths[e])
        idx = np.arange(0, length, k)  # recorded frames at world-model spacing
        frames = arrays.frames[start + idx]
        steps = arrays.actions[start : start + (len(idx) - 1) * k]
        actions = steps.reshape(len(idx) - 1, k, -1).mean(1).astype(np.float32)
        done = sliding_done(wm, frames, actions)
        fired = np.flatnonzero(done >= threshold)
        record: dict[str, Any] = {
            "episode": e,
            "task": meta.task,
            "kind": meta.kind,
            "success": meta.success,
            "frames": idx.tolist(),
            "done": done.round(4).tolist(),
            "done_fired_at": int(idx[fired[0]]) if fired.size else None,
            "goals": {},
        }
        if meta.success:
            s = success_frame(arrays.done[start : start + length])
            record["success_frame"] = s
            record["fire_offset"] = record["done_fired_at"] - s if fired.size else None
        for source in cfg.goals:
            if source == "demo":
                others = [o for o in successes_of.get(meta.task, []) if o != e]
                goal_ep = int(rng.choice(others)) if others else (e if meta.success else None)
                if goal_ep is None:
                    continue  # no successful episode of this task at all
                goal = arrays.frames[last_row[goal_ep]][None]
                note = {"goal_episode": goal_ep, "own_goal": goal_ep == e}
            else:
                goal, fired_goal, goal_step = imagined[e]
                note = {"goal_fired": fired_goal, "goal_step": goal_step}
            with wm.autocast():
                terms = reward.score(frames, goal, done)
            alignment = terms.alignment.cpu().numpy()
            total = terms.reward.cpu().numpy()
            entry = {
                **note,
                "alignment": alignment.round(4).tolist(),
                "reward": total.round(4).tolist(),
                "final_alignment": float(alignment[-1]),
            }
            if meta.success:
                upto = idx <= record["success_frame"]
                entry["spearman_alignment_time"] = spearman(alignment[upto], idx[upto])
                entry["spearman_reward_time"] = spearman(total[upto], idx[upto])
            record["goals"][source] = entry
        records.append(record)
    return summarize(records, cfg, reward.backend, wm)


def summarize(records: list[dict[str, Any]], cfg: RewardSanityConfig, backend: str, wm: WorldModel) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    for task in sorted({r["task"] for r in records}):
        mine = [r for r in records if r["task"] == task]
        wins = [r for r in mine if r["success"]]
        losses = [r for r in mine if not r["success"]]
        offsets = [r["fire_offset"] for r in wins if r["fire_offset"] is not None]
        row: dict[str, Any] = {
            "successful": len(wins),
            "unsuccessful": len(losses),
            "done_fired_on_success": len(offsets) / len(wins) if wins else None,
            "fire_offset_median": _median(offsets),
            "fire_offset_mean_abs": float(np.mean(np.abs(offsets))) if offsets else None,
            "false_fire_rate": (sum(r["done_fired_at"] is not None for r in losses) / len(losses)) if losses else None,
            "goals": {},
        }
        for source in cfg.goals:
            scored = [r for r in wins if source in r["goals"]]
            if not scored:
                continue
            values = np.concatenate([r["goals"][source]["alignment"] for r in scored])
            row["goals"][source] = {
                "alignment_p5_p95": [float(np.percentile(values, 5)), float(np.percentile(values, 95))],
                "spearman_alignment_time": _nanmean([r["goals"][source]["spearman_alignment_time"] for r in scored]),
                "spearman_reward_time": _nanmean([r["goals"][source]["spearman_reward_time"] for r in scored]),
                "episodes": len(scored),
                "final_alignment_auroc": auroc(
                    [r["goals"][source]["final_alignment"] for r in scored],
                    [r["goals"][source]["final_alignment"] for r in losses if source in r["goals"]],
                ),
                "goal_model_fired": (
                    float(np.mean([r["goals"][source]["goal_fired"] for r in scored]))
                    if source == "goal_model"
                    else None
                ),
                "own_goal_used": (sum(r["goals"][source]["own_goal"] for r in scored) if source == "demo" else None),
            }
        tasks[task] = row
    return {
        "reward_backend": backend,
        "frame_skip": wm.cfg.frame_skip,
        "context_length": wm.cfg.context_length,
        "done_threshold": cfg.reward.done_threshold,
        "done_bonus": cfg.reward.done_bonus,
        "alignment_offset": cfg.reward.alignment_offset,
        "alignment_scale": cfg.reward.alignment_scale,
        "goals": list(cfg.goals),
        "tasks": tasks,
        "episodes": records,
    }


def markdown(report: dict[str, Any], title: str) -> str:
    backend = report["reward_backend"]
    lines = [
        f"# Reward sanity: {title}",
        "",
        f"Perceptual distance D: **{backend}**. Reward r = {report['alignment_scale']:g} * ((1 - D) - "
        f"{report['alignment_offset']:g}) + {report['done_bonus']:g} * [done >= {report['done_threshold']:g}]. "
        "Real frames every "
        f"{report['frame_skip']} control steps; done probability over sliding windows of "
        f"{report['context_length']} frames.",
        "",
        "Spearman: rank correlation with time over each successful episode's frames up to its first success "
        "frame (mean over episodes). AUROC: last-frame alignment separating successful from unsuccessful "
        "episodes of the task (0.5 = chance). Fire offset: control steps from the real success frame to the "
        "first frame where done >= threshold (negative = early).",
        "",
    ]
    header = ["task", "goal", "successes", "rho(1-D, t)", "rho(r, t)", "AUROC (1-D)", "1-D p5..p95", "goal fired"]
    rows = [
        [
            task,
            source,
            g["episodes"],
            number(g["spearman_alignment_time"]),
            number(g["spearman_reward_time"]),
            number(g["final_alignment_auroc"]),
            f"{g['alignment_p5_p95'][0]:.3f}..{g['alignment_p5_p95'][1]:.3f}",
            number(g["goal_model_fired"]) if source == "goal_model" else f"own goal: {g['own_goal_used']}",
        ]
        for task, row in report["tasks"].items()
        for source, g in row["goals"].items()
    ]
    lines += ["## Goal alignment vs progress (" + backend + ")", "", *table(header, rows)]
    header = [
        "task",
        "successes",
        "fired on success",
        "median offset (control steps)",
        "mean abs offset",
        "unsuccessful",
        "false fire rate",
    ]
    rows = [
        [
            task,
            row["successful"],
            number(row["done_fired_on_success"]),
            number(row["fire_offset_median"], 1),
            number(row["fire_offset_mean_abs"], 1),
            row["unsuccessful"],
            number(row["false_fire_rate"]),
        ]
        for task, row in report["tasks"].items()
    ]
    lines += [
        "",
        "## Done signal vs the real success frame",
        "",
        *table(header, rows),
    ]
    return "\n".join(lines) + "\n"


def progress_plot(report: dict[str, Any], path: Path, bins: int = 10) -> Path | None:
    """Mean alignment per progress bin, one line per task and goal source (successful episodes)."""
    try:
        from roboscape_r_ros.world_model.media import line_plot
    except ImportError:  # pragma: no cover - plotting is optional
        return None
    series = {}
    for task in report["tasks"]:
        for source in report["goals"]:
            sums, counts = np.zeros(bins), np.zeros(bins)
            for r in report["episodes"]:
                if r["task"] != task or not r["success"] or source not in r["goals"]:
                    continue
                progress = np.minimum(np.asarray(r["frames"]) / max(r["success_frame"], 1), 1.0)
                which = np.minimum((progress * bins).astype(int), bins - 1)
                np.add.at(sums, which, r["goals"][source]["alignment"])
                np.add.at(counts, which, 1)
            if counts.any():
                xs = (np.arange(bins) + 0.5) / bins
                series[f"{task[:14]} {source}"] = (
                    xs.tolist(),
                    np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).tolist(),
                )
    if not series:
        return None
    return line_plot(
        path,
        series,
        f"goal alignment 1 - D ({report['reward_backend']}) vs progress",
        "progress to the success frame",
        "1 - D",
    )


@dataclass(frozen=True)
class TaskSanity:
    task: str
    spearman_reward_time: float | None  # mean over successful episodes, with the first goal source scored
    done_fired_on_success: float | None  # share of successful episodes where the done head fired


@dataclass(frozen=True)
class RewardSanityResult:
    output: Path  # folder of report.md, reward_sanity.json and the plot
    text: str  # report.md's text
    wall_s: float
    tasks: tuple[TaskSanity, ...]

    def __str__(self) -> str:
        return self.text + f"\nwritten to {self.output} ({self.wall_s:.0f} s)"


def _first_goal(task_row: dict[str, Any]) -> dict[str, Any]:
    """A task's report row for its first kind of goal ({} when it has none)."""
    return next(iter(task_row["goals"].values()), {})


def run_reward_sanity(cfg: RewardSanityConfig) -> RewardSanityResult:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    run = resolve_world_model(cfg.run)
    wm = WorldModel.from_checkpoint(run.checkpoint, device=cfg.device)
    wm.configure(cfg.inference)
    dataset_path = cfg.dataset or (run.split or {}).get("dataset", "")
    if not dataset_path:
        raise ImaginationError(f"{run.checkpoint}: no dataset given and no {SPLIT_FILE} names one (set dataset=...)")
    dataset = open_run_dataset(dataset_path, run.split)
    check_world_model(wm, dataset, f"world model {run.checkpoint}")
    episodes = context_episodes(run, dataset, cfg.episodes)
    report = reward_sanity(wm, dataset, episodes, cfg)
    report.update(
        {
            "world_model": str(run.checkpoint),
            "dataset": str(dataset.root),
            "episode_set": cfg.episodes,
            "wall_s": time.perf_counter() - start,
        }
    )
    out = Path(cfg.output) if cfg.output else run.folder / "reward_sanity"
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "reward_sanity.json", json.dumps(report, indent=1, allow_nan=True))
    text = markdown(report, f"{run.checkpoint} on {cfg.episodes} episodes of {dataset.root}")
    plot = progress_plot(report, out / "alignment_vs_progress.png")
    if plot is not None:
        text += f"\n![alignment vs progress]({plot.name})\n"
    write_atomic(out / "report.md", text)
    tasks = tuple(
        TaskSanity(
            task,
            _first_goal(row).get("spearman_reward_time"),
            row["done_fired_on_success"],
        )
        for task, row in report["tasks"].items()
    )
    return RewardSanityResult(out, text, report["wall_s"], tasks)
