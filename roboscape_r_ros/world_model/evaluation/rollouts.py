"""evaluate-wm's open-loop rollouts: windows of the scored episodes imagined from their recorded actions
(and from another window's, shuffled), scored per horizon against the recorded frames; and the
real | dreamed | goal GIF of a few successful episodes."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from roboscape_r_ros.perception.metrics import ssim
from roboscape_r_ros.stats import auroc
from roboscape_r_ros.world_model.evaluation.metrics import GoalRun, Metrics, Scored, capped_psnr, masked_psnr, nanmean
from roboscape_r_ros.world_model.media import labelled_grid, write_gif
from roboscape_r_ros.world_model.rollout import gather, rollout, spread, spread_windows, world_frames

Records = dict[str, list[Any]]  # per-window values of one horizon, by name


def windows_by_horizon(scored: Scored, horizons: list[int], per_episode: int) -> dict[int, list[tuple[int, int]]]:
    """(episode, start) of up to ``per_episode`` windows per scored episode, evenly spread, under the
    longest of ``horizons`` (ascending) the episode can hold: each window is scored at every horizon up
    to its own."""
    groups: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for e in scored.episodes:
        room = world_frames(int(scored.arrays.lengths[e]), scored.k) - scored.c
        fitting = [h for h in horizons if h <= room]
        if not fitting:
            continue
        eps, starts = spread_windows(scored.arrays, [e], scored.c, fitting[-1], scored.k, per_episode)
        groups[fitting[-1]] += list(zip(eps.tolist(), starts.tolist()))
    return groups


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of range(n) that moves every index (n >= 2)."""
    order = rng.permutation(n)
    perm = np.empty(n, np.int64)
    perm[order] = np.roll(order, 1)
    return perm


@torch.no_grad()
def open_loop(
    scored: Scored,
    horizons: list[int],
    windows_per_episode: int,
    change_threshold: int,
    batch_size: int,
    rng: np.random.Generator,
    progress: bool = False,
) -> Metrics:
    """Rollouts per scored episode; per-horizon metrics (``horizons``) and the done head's AUROC on the
    dreamed frames."""
    groups = windows_by_horizon(scored, horizons, windows_per_episode)
    records: dict[int, Records] = {h: defaultdict(list) for h in horizons}
    dream_done: list[tuple[float, float]] = []
    bar = tqdm(
        total=sum(len(v) for v in groups.values()),
        desc="evaluate-wm: open-loop rollouts",
        disable=not progress,
        dynamic_ncols=True,
        unit="window",
    )
    model = scored.model
    for own, members in sorted(groups.items()):
        eps = np.array([m[0] for m in members], np.int64)
        w = gather(scored.arrays, eps, np.array([m[1] for m in members], np.int64), scored.c, own, scored.k)
        dreamed, done = rollout(model, w.context, w.context_actions, w.actions, batch_size)
        shuffled = None
        if len(w) >= 2:  # no window keeps its own actions
            perm = derangement(len(w), rng)
            shuffled, _ = rollout(model, w.context, w.context_actions, w.actions[perm], batch_size)
        dream_done += list(zip(done.ravel().tolist(), w.done.ravel().tolist()))
        last = w.context[:, -1]
        for h in (h for h in horizons if h <= own):
            truth, pred = w.truth[:, h - 1], dreamed[:, h - 1]
            r = records[h]
            r["kind"] += [scored.kind(e) for e in eps]
            r["episode"] += eps.tolist()
            r["psnr"] += capped_psnr(pred, truth).tolist()
            r["psnr_copy"] += capped_psnr(last, truth).tolist()
            r["psnr_recon"] += capped_psnr(scored.reconstruct(truth), truth).tolist()
            r["psnr_shuffled"] += (
                capped_psnr(shuffled[:, h - 1], truth).tolist() if shuffled is not None else [float("nan")] * len(w)
            )
            r["ssim"] += ssim(pred, truth).numpy().tolist()
            r["ssim_copy"] += ssim(last, truth).numpy().tolist()
            r["perceptual"] += scored.perceptual(pred, truth).tolist()
            r["perceptual_copy"] += scored.perceptual(last, truth).tolist()
            changed = np.abs(truth.astype(np.int16) - last.astype(np.int16)).max(-1) > change_threshold
            r["changed_share"] += changed.mean((1, 2)).tolist()
            r["psnr_changed"] += masked_psnr(pred, truth, changed).tolist()
            r["psnr_changed_copy"] += masked_psnr(last, truth, changed).tolist()
            r["identical_copy"] += (last == truth).all((1, 2, 3)).tolist()
        bar.update(len(w))
    bar.close()
    table = {h: horizon_summary(r) for h, r in records.items() if r["psnr"]}
    scores, labels = (np.array([d[i] for d in dream_done]) for i in (0, 1))
    positive = labels >= 0.5
    dream = {
        "frames": len(scores),
        "positives": int(positive.sum()),
        "auroc": auroc(scores[positive], scores[~positive]),
    }
    return {"horizons": table, "done_on_dreamed_frames": dream}


def horizon_summary(r: Records) -> Metrics:
    """One horizon's row of metrics.json: means over its windows, overall and by episode kind."""
    p, pc, ps = (np.asarray(r[key]) for key in ("psnr", "psnr_copy", "psnr_shuffled"))
    return {
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


@torch.no_grad()
def real_dream_goal_gif(scored: Scored, goal: GoalRun | None, examples: int, path: Path) -> Path | None:
    """real | dreamed (open loop from the first context frames, true actions) | goal model, for up to
    ``examples`` of the goal model's episodes; None without any."""
    if goal is None or not goal.episodes:
        return None
    arrays, k, c = scored.arrays, scored.k, scored.c
    rows = []
    for i in spread(list(range(len(goal.episodes))), examples):
        e = goal.episodes[i]
        n = world_frames(int(arrays.lengths[e]), k)
        real = arrays.frames[arrays.starts[e] : arrays.starts[e] + arrays.lengths[e] : k]
        if n > c:
            w = gather(arrays, np.array([e]), np.array([0]), c, n - c, k)
            dreamed, _ = rollout(scored.model, w.context, w.context_actions, w.actions)
            dreamed = np.concatenate([w.context[0], dreamed[0]])
        else:
            dreamed = real
        goal_clip = goal.imagined.frames[i, : int(goal.imagined.goal_step[i]) + 1].cpu().numpy()
        rows.append([real, dreamed, goal_clip])
    labels = ["real", f"dreamed (after {c} real)", "goal model"]
    return write_gif(path, labelled_grid(rows, labels), 5.0)
