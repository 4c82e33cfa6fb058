"""`roboscape-r calibrate-ood`: is the shadow-mode prediction error a signal that the robot left the
world model's domain, and at which threshold should the guard hold the arm?

    roboscape-r calibrate-ood run=outputs/runs/wm3_w4 in_domain=[outputs/datasets/eval_seed1001] \
        changed=[table=outputs/datasets/ood_table,light=outputs/datasets/ood_light]

Every episode of each dataset is replayed through the dreamer's own ``ShadowMonitor`` at control rate
(each frame observed, then the recorded action answering it), so the errors are those ``dream/error``
would publish beside a running arm. Reported, per set: the error distribution; per changed set: the
AUROC of its errors against the in-domain ones (per scored frame), and how the ``OodGate`` with the
proposed threshold (a quantile of the in-domain errors) behaves: the share of episodes it holds and
the scored frames until it does; on the in-domain set, the share of episodes it holds at all (false
holds). Episodes start with a fresh context, as after a reset; a scene change in the middle of an
episode is scored from the first frame after it on the same terms.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.files import write_atomic
from roboscape_r_ros.imagination.env import check_world_model
from roboscape_r_ros.markdown import MISSING, number, percent, table
from roboscape_r_ros.runtime.gates.ood_guard import OodGate
from roboscape_r_ros.runtime.sessions.dream_session import ShadowMonitor, load_world_model
from roboscape_r_ros.stats import auroc

REPORT = "report"


@dataclass
class CalibrateOodConfig:
    run: str = option("", help="world-model run folder (or checkpoint) the dreamer runs in shadow mode")
    in_domain: list[str] = option([], help="datasets of the scene the robot works in (not the training episodes)")
    changed: list[str] = option([], help="changed scenes, each name=dataset (another colour, light, camera pose)")
    quantile: float = option(0.99, help="proposed threshold: this quantile of the in-domain errors", low=0.5, below=1.0)
    trip_after: int = option(3, help="the guard's consecutive errors above the threshold that hold the arm", low=1)
    max_episodes: int = option(0, help="episodes per dataset at most (0: all)")
    output: str = option("", help="report folder (default: <run>/ood_calibration)")
    device: str = option("cpu", help="torch device of the world model")
    threads: int = option(0, help="torch CPU threads (0: torch's default)")
    progress: bool = option(True, help="show a progress bar")

    def __post_init__(self) -> None:
        if not self.run or not self.in_domain:
            raise ConfigError("calibrate-ood needs run=<world model> and in_domain=[<dataset>, ...]")
        for entry in self.changed:
            name, sep, path = entry.partition("=")
            if not sep or not name or not path:
                raise ConfigError(f"changed entry '{entry}' is not name=dataset")


def replayed(dataset: EpisodeDataset, max_episodes: int) -> int:
    """Episodes of ``dataset`` that are replayed (all, or the first ``max_episodes``)."""
    return dataset.num_episodes if max_episodes <= 0 else min(max_episodes, dataset.num_episodes)


@torch.no_grad()
def shadow_errors(monitor: ShadowMonitor, dataset: EpisodeDataset, max_episodes: int, bar: tqdm) -> list[np.ndarray]:
    """Per episode, the per-pixel MSE of every scored frame [n_e], as shadow mode publishes them."""
    errors = []
    for index in range(replayed(dataset, max_episodes)):
        episode = dataset.episode(index)
        monitor.reset()
        scored = []
        for t, (frame, action) in enumerate(zip(episode.frames, episode.actions)):
            result = monitor.observe(t, np.ascontiguousarray(frame))
            if result is not None:
                scored.append(result.mse)
            monitor.act(t, np.clip(action, -1.0, 1.0))
        errors.append(np.asarray(scored, np.float64))
        bar.update(1)
    return errors


def frames_to_hold(errors: np.ndarray, threshold: float, trip_after: int) -> int | None:
    """Scored frames until the guard holds (1-based), or None if it never does in this episode."""
    gate = OodGate(threshold, trip_after, release_after=1)
    for i, error in enumerate(errors, 1):
        if gate.update(float(error)) == "hold":
            return i
    return None


def describe(errors: list[np.ndarray]) -> dict[str, float]:
    flat = np.concatenate(errors) if errors else np.zeros(0)
    return {
        "episodes": len(errors),
        "scored_frames": int(flat.size),
        "median": float(np.median(flat)) if flat.size else float("nan"),
        "p90": float(np.quantile(flat, 0.9)) if flat.size else float("nan"),
        "p99": float(np.quantile(flat, 0.99)) if flat.size else float("nan"),
    }


def guard_behaviour(errors: list[np.ndarray], threshold: float, trip_after: int) -> dict[str, float | None]:
    holds = [frames_to_hold(e, threshold, trip_after) for e in errors]
    held = [h for h in holds if h is not None]
    return {
        "held_episodes": len(held) / len(holds) if holds else float("nan"),
        "median_frames_to_hold": float(np.median(held)) if held else None,
    }


def run_calibrate_ood(cfg: CalibrateOodConfig) -> str:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    wm, run = load_world_model(cfg.run, cfg.device)
    sets = {"in-domain": [EpisodeDataset.open(p) for p in cfg.in_domain]}
    for entry in cfg.changed:
        name, _, path = entry.partition("=")
        sets[name] = [EpisodeDataset.open(path)]
    for datasets in sets.values():
        for dataset in datasets:
            check_world_model(wm, dataset)
    monitor = ShadowMonitor(wm)
    total = sum(replayed(d, cfg.max_episodes) for datasets in sets.values() for d in datasets)
    errors: dict[str, list[np.ndarray]] = {}
    with tqdm(total=total, unit="episode", desc="calibrate-ood", disable=not cfg.progress) as bar:
        for name, datasets in sets.items():
            errors[name] = [e for d in datasets for e in shadow_errors(monitor, d, cfg.max_episodes, bar)]

    inside = np.concatenate(errors["in-domain"])
    threshold = float(np.quantile(inside, cfg.quantile))
    report = {
        "world_model": str(run.checkpoint),
        "frame_skip": wm.cfg.frame_skip,
        "threshold": threshold,
        "quantile": cfg.quantile,
        "trip_after": cfg.trip_after,
        "sets": {name: describe(e) for name, e in errors.items()},
        "guard": {name: guard_behaviour(e, threshold, cfg.trip_after) for name, e in errors.items()},
        "auroc": {name: auroc(np.concatenate(e), inside) for name, e in errors.items() if name != "in-domain"},
    }
    out = Path(cfg.output) if cfg.output else run.checkpoint.parent / "ood_calibration"
    write_atomic(out / f"{REPORT}.json", json.dumps(report, indent=1))
    write_atomic(out / f"{REPORT}.md", markdown(report))
    return markdown(report) + f"\nreport: {out / REPORT}.md"


def markdown(report: dict) -> str:
    header = ["set", "episodes", "scored frames", "median error", "p90", "p99", "AUROC vs in-domain"]
    header += ["episodes held", "median frames to hold"]
    rows = []
    for name, s in report["sets"].items():
        guard = report["guard"][name]
        to_hold = guard["median_frames_to_hold"]
        rows.append(
            [
                name,
                s["episodes"],
                s["scored_frames"],
                number(s["median"], 5),
                number(s["p90"], 5),
                number(s["p99"], 5),
                number(report["auroc"].get(name), 3),
                percent(guard["held_episodes"]),
                MISSING if to_hold is None else f"{to_hold:g}",
            ]
        )
    lines = [
        "# Out-of-domain guard calibration (shadow-mode prediction error)",
        "",
        f"World model `{report['world_model']}`; a scored frame every {report['frame_skip']} control steps. "
        f"Proposed threshold **{report['threshold']:.5f}** (the {report['quantile']:.0%} quantile of the "
        f"in-domain errors); the guard holds after {report['trip_after']} scored frames above it in a row.",
        "",
        *table(header, rows),
        "",
        "Episodes held on the in-domain set are false holds. Set policy_controller's `ood_guard.threshold` "
        "to the proposed value (and `ood_guard.trip_after` as here) to hold the arm on such frames.",
    ]
    return "\n".join(lines) + "\n"
