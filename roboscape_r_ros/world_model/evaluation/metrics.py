"""What evaluate-wm measures beside its open-loop rollouts: image metrics, change rates between
consecutive frames, the done head on real frames and the goal model, each as a JSON-ready dict
(NaN where nothing was measured; `json_safe` writes it as null)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from tqdm import tqdm

from roboscape_r_ros.data.reader import EpisodeArrays, EpisodeDataset
from roboscape_r_ros.perception.distance import PerceptualDistance
from roboscape_r_ros.perception.metrics import psnr
from roboscape_r_ros.stats import auroc, roc_curve
from roboscape_r_ros.world_model.data import skip_actions
from roboscape_r_ros.world_model.goal_model import GoalImagination
from roboscape_r_ros.world_model.model import WorldModel

PSNR_CAP = 50.0  # dB: identical frames would give infinity
FAILURE_KINDS = ("failed", "random", "policy")  # kinds made to fail (or a policy's, which often does)

Metrics = dict[str, Any]  # one part of metrics.json, NaN where not measured
Roc = tuple[np.ndarray, np.ndarray]  # false- and true-positive rates


def capped_psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR [n], capped at PSNR_CAP."""
    return psnr(a, b).clamp(max=PSNR_CAP).numpy()


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """PSNR [n] over the pixels in mask [n,H,W] (NaN where the mask is empty)."""
    err = ((a.astype(np.float32) - b.astype(np.float32)) ** 2).mean(-1)  # [n,H,W]
    count = mask.sum((1, 2))
    mse = np.where(count > 0, (err * mask).sum((1, 2)) / np.maximum(count, 1), np.nan)
    with np.errstate(divide="ignore"):
        return np.minimum(10 * np.log10(255.0**2 / mse), PSNR_CAP)


def nanmean(x: ArrayLike) -> float:
    """Mean over the values that are not NaN; NaN when none is finite."""
    values = np.asarray(x, np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def json_safe(x: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null, numpy scalars plain numbers, keys strings."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


@dataclass
class Scored:
    """A world model and the recorded episodes it is scored on, with the perceptual distance of the report."""

    model: WorldModel
    dataset: EpisodeDataset
    arrays: EpisodeArrays  # the dataset's, loaded
    episodes: list[int]  # the scored episodes
    distance: PerceptualDistance

    @property
    def k(self) -> int:
        """Control steps per world-model step."""
        return self.model.cfg.frame_skip

    @property
    def c(self) -> int:
        """Real context frames an open-loop rollout starts from."""
        return self.model.cfg.context_length - 1

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
        """The tokenizer's reconstruction of each frame (the ceiling of a dreamed frame)."""
        out = np.empty_like(frames)
        for s in range(0, len(frames), 128):
            out[s : s + 128] = self.model.decode(self.model.tokens(frames[s : s + 128])).cpu().numpy()
        return out


# -- change between consecutive frames ------------------------------------------------------------
@torch.no_grad()
def change_rates(scored: Scored, change_threshold: int) -> Metrics:
    """Shares of token ids, 8x8 patches and pixels that change between consecutive world-model frames
    of the scored episodes. Token ids as the dynamics reads them: `window_tokens` of context_length
    windows (consecutive windows share a frame, so each pair of frames counts once); `tokens_per_frame`:
    each frame's own ids."""
    model, arrays = scored.model, scored.arrays
    T, grid = model.cfg.context_length, model.grid
    changed: dict[str, float] = defaultdict(float)
    pairs = 0
    for e in scored.episodes:
        s, n = int(arrays.starts[e]), int(arrays.lengths[e])
        frames = arrays.frames[s : s + n : scored.k]
        if len(frames) < 2:
            continue
        ids = model.tokens(frames)  # [t,N]
        changed["tokens_per_frame"] += float((ids[1:] != ids[:-1]).float().mean(-1).sum())
        for w in range(0, len(frames) - 1, T - 1):
            held = model.window_tokens(frames[w : w + T], ids[w : w + T])
            changed["tokens"] += float((held[1:] != held[:-1]).float().mean(-1).sum())
        moved = np.abs(frames[1:].astype(np.int16) - frames[:-1].astype(np.int16)).max(-1) > change_threshold
        changed["pixels"] += float(moved.mean((1, 2)).sum())  # moved: [t-1,H,W]
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
        "token_hold_threshold": model.cfg.token_hold_threshold,
        "change_threshold": change_threshold,
    }


# -- done head on real frames ---------------------------------------------------------------------
@torch.no_grad()
def done_probabilities(scored: Scored, e: int) -> np.ndarray:
    """The done probability [n] of each recorded frame of episode e, given up to context_length frames
    ending at it (frame_skip apart) and the actions between them."""
    model, arrays, k = scored.model, scored.arrays, scored.k
    T = model.cfg.context_length
    s, n = int(arrays.starts[e]), int(arrays.lengths[e])
    tokens = model.tokens(arrays.frames[s : s + n]).cpu()  # [n,N], each frame encoded once
    actions = arrays.actions[s : s + n]
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
            probability = model.done_probability(
                arrays.frames[s + rows[b : b + 256]], acts[b : b + 256], tokens=tokens[rows[b : b + 256]]
            )
            p[ts_a[b : b + 256]] = probability[:, -1].float().cpu().numpy()
    return p


def done_head(scored: Scored, progress: bool = False) -> tuple[Metrics, Roc | None]:
    """The done head on every frame of the scored episodes that carry done labels: AUROC, accuracy, and
    firing at the done threshold on failures (per frame and per episode) and on successes (near the end
    or earlier); with the ROC curve when both classes occur."""
    dataset, arrays = scored.dataset, scored.arrays
    probs, labels, kinds, episodes = [np.empty(0, np.float32)], [np.empty(0, np.float32)], [], []
    labelled = [e for e in scored.episodes if dataset.episodes[e].labelled]  # others have no done labels
    for e in tqdm(labelled, desc="evaluate-wm: done head", disable=not progress, dynamic_ncols=True, unit="episode"):
        s, n = int(arrays.starts[e]), int(arrays.lengths[e])
        probs.append(done_probabilities(scored, e))
        labels.append(arrays.done[s : s + n])
        kinds += [scored.kind(e)] * n
        episodes += [e] * n
    prob, label = np.concatenate(probs), np.concatenate(labels)
    kinds_a, eps_a = np.array(kinds), np.array(episodes)
    positive = label >= 0.5
    threshold = scored.model.cfg.done_threshold
    out: Metrics = {
        "frames": len(prob),
        "unlabelled_episodes_skipped": len(scored.episodes) - len(labelled),
        "positives": int(positive.sum()),
        "auroc": auroc(prob[positive], prob[~positive]),
        "accuracy_at_0.5": float(((prob >= 0.5) == positive).mean()) if len(prob) else float("nan"),
        "threshold": threshold,
        "tpr_at_threshold": float((prob[positive] >= threshold).mean()) if positive.any() else float("nan"),
        "fpr_at_threshold_negatives": float((prob[~positive] >= threshold).mean())
        if (~positive).any()
        else float("nan"),
    }
    success = np.array([dataset.episodes[e].success for e in eps_a])
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
    for e, near_end in fired_near_end.items():
        by_task[dataset.episodes[e].task].append(near_end)
    out["successful_episodes_fired_near_end_by_task"] = {
        task: {"episodes": len(f), "fired": float(np.mean(f))} for task, f in sorted(by_task.items())
    }
    out["successful_episodes_fired_early"] = (
        float(np.mean([bool((prob[(eps_a == e) & ~positive] >= threshold).any()) for e in succ_eps]))
        if len(succ_eps)
        else float("nan")
    )
    roc = roc_curve(prob, positive) if positive.any() and (~positive).any() else None
    return out, roc


# -- goal model -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GoalRun:
    """The goal model's imagination from each scored successful episode's first frame."""

    episodes: list[int]
    imagined: GoalImagination


MeanFinals = Callable[[set[str]], tuple[dict[str, np.ndarray], str]]  # tasks -> mean final frames, their source


def task_mean_finals(
    dataset: EpisodeDataset, arrays: EpisodeArrays, episodes: Iterable[int], tasks: set[str]
) -> dict[str, np.ndarray]:
    """Each task's mean final frame over the successful ones of ``episodes`` (tasks without one left out)."""
    means = {}
    episodes = list(episodes)
    for task in tasks:
        finals = [
            arrays.frames[arrays.starts[e] + arrays.lengths[e] - 1]
            for e in episodes
            if dataset.episodes[e].success and dataset.episodes[e].task == task
        ]
        if finals:
            means[task] = np.mean(np.stack(finals).astype(np.float32), 0).round().astype(np.uint8)
    return means


@torch.no_grad()
def goal_model(
    scored: Scored, trained: bool, max_steps: int, mean_finals: MeanFinals
) -> tuple[Metrics, GoalRun | None]:
    """The goal frame imagined from frame 0 and the instruction of each scored successful episode, against
    the episode's true final frame, beside the task's mean final frame (``mean_finals``) and the first frame.
    ``max_steps``: the imagination's cap (0: the longest success + 4 world-model steps)."""
    ds, a, k = scored.dataset, scored.arrays, scored.k
    if not trained:
        return {"episodes": 0, "trained": False}, None
    successes = [e for e in scored.episodes if ds.episodes[e].success]
    if not successes:
        return {"episodes": 0, "trained": True}, None
    mean_final, mean_source = mean_finals({ds.episodes[e].task for e in successes})
    steps = max_steps or max(int(a.lengths[e]) for e in successes) // k + 4
    first = np.stack([a.frames[a.starts[e]] for e in successes])
    truth = np.stack([a.frames[a.starts[e] + a.lengths[e] - 1] for e in successes])
    imagined = scored.model.imagine_goal(first, [ds.episodes[e].instruction for e in successes], max_steps=steps)
    goal = imagined.goal.cpu().numpy()
    has_mean = np.array([ds.episodes[e].task in mean_final for e in successes])
    mean = np.stack([mean_final.get(ds.episodes[e].task, first[i]) for i, e in enumerate(successes)])
    success_frame = [int(np.argmax(a.done[a.starts[e] : a.starts[e] + a.lengths[e]] >= 1.0)) for e in successes]
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(successes):
        by_task[ds.episodes[e].task].append(i)
    d_goal, d_mean, d_first = (
        scored.perceptual(goal, truth),
        scored.perceptual(mean, truth),
        scored.perceptual(first, truth),
    )
    p_goal, p_mean, p_first = capped_psnr(goal, truth), capped_psnr(mean, truth), capped_psnr(first, truth)
    out = {
        "episodes": len(successes),
        "trained": True,
        "max_steps": steps,
        "fired": float(imagined.fired.float().mean()),
        "goal_step_control_steps": float(imagined.goal_step.float().mean()) * k,
        "true_success_frame": float(np.mean(success_frame)),
        "perceptual_goal": nanmean(d_goal),
        "perceptual_task_mean_final": nanmean(d_mean[has_mean]),
        "perceptual_first_frame": nanmean(d_first),
        "psnr_goal": nanmean(p_goal),
        "psnr_task_mean_final": nanmean(p_mean[has_mean]),
        "psnr_first_frame": nanmean(p_first),
        "task_mean_final_source": mean_source,
        "goal_closer_than_mean_final": float(np.mean((d_goal < d_mean)[has_mean])) if has_mean.any() else float("nan"),
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
    return out, GoalRun(successes, imagined)
