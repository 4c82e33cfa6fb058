"""Open-loop rollouts of the action world model from real context windows of recorded episodes.

A window at recorded frame `start` holds `context` world-model frames start, start+k, ... (k =
frame_skip) and the `horizon` frames after them; the model sees the context frames and the actions
between them, then imagines `horizon` steps from the recorded (mean) actions alone.

The controllability sheet imagines from a few real contexts under held actions instead (+-1 on one
action dimension): if the rollouts look alike, the model ignores its actions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import chain, zip_longest
from pathlib import Path

import numpy as np
import torch

from roboscape_r_ros.data.reader import EpisodeArrays, EpisodeDataset
from roboscape_r_ros.world_model.data import skip_actions
from roboscape_r_ros.world_model.media import labelled_grid, write_gif, write_png

SHEET_PNG, SHEET_GIF = "controllability.png", "controllability.gif"
SHEET_SEQUENCES = 6
META_WORLD_ACTIONS = ["dx", "dy", "dz", "gripper"]  # envs.metaworld_env.ACTION_NAMES (importing it loads MuJoCo)


@dataclass
class Windows:
    """n windows of one horizon H (numpy)."""

    episode: np.ndarray  # int64 [n] position in EpisodeArrays (= dataset episode index)
    start: np.ndarray  # int64 [n] recorded frame of the first context frame
    context: np.ndarray  # uint8 [n,C,H,W,3]
    context_actions: np.ndarray  # float32 [n,C-1,A]
    actions: np.ndarray  # float32 [n,H,A] actions of the imagined steps
    truth: np.ndarray  # uint8 [n,H,H,W,3] recorded frames of the imagined steps
    done: np.ndarray  # float32 [n,H] done labels of those frames

    def __len__(self) -> int:
        return len(self.episode)


def world_frames(length: int, frame_skip: int) -> int:
    """World-model frames a recorded episode of `length` frames holds from its first frame."""
    return (length - 1) // frame_skip + 1


def gather(
    arrays: EpisodeArrays, episodes: np.ndarray, starts: np.ndarray, context: int, horizon: int, frame_skip: int
) -> Windows:
    k, n = frame_skip, context + horizon
    rows = arrays.starts[episodes, None] + starts[:, None] + np.arange((n - 1) * k + 1)  # [w,(n-1)k+1]
    kept = rows[:, ::k]  # [w,n]
    actions = skip_actions(arrays.actions[rows[:, :-1]], k)  # [w,n-1,A]
    return Windows(
        episodes,
        starts,
        arrays.frames[kept[:, :context]],
        actions[:, : context - 1],
        actions[:, context - 1 :],
        arrays.frames[kept[:, context:]],
        arrays.done[kept[:, context:]],
    )


def spread_windows(
    arrays: EpisodeArrays, episodes, context: int, horizon: int, frame_skip: int, per_episode: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to `per_episode` window starts per episode, evenly spread over the episode (episodes too short
    for context + horizon frames give none). Returns (episode positions [n], starts [n])."""
    span = (context + horizon - 1) * frame_skip + 1
    eps, starts = [], []
    for e in episodes:
        room = int(arrays.lengths[e]) - span
        if room < 0:
            continue
        picks = np.unique(np.linspace(0, room, per_episode).round().astype(np.int64))
        eps += [e] * len(picks)
        starts += picks.tolist()
    return np.asarray(eps, np.int64), np.asarray(starts, np.int64)


@torch.no_grad()
def rollout(
    model, context: np.ndarray, context_actions: np.ndarray, actions: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Imagine actions [n,H,A] from context frames [n,C,...] -> frames uint8 [n,H,h,w,3], done prob [n,H]."""
    n, horizon = actions.shape[:2]
    frames = np.empty((n, horizon, *context.shape[2:]), np.uint8)
    done = np.empty((n, horizon), np.float32)
    for s in range(0, n, batch_size):
        part = slice(s, s + batch_size)
        state = model.encode_context(context[part], context_actions[part])
        for h in range(horizon):
            state, frame, prob = model.step(state, actions[part, h])
            frames[part, h] = frame.cpu().numpy()
            done[part, h] = prob.float().cpu().numpy()
    return frames, done


def spread(items: list, count: int) -> list:
    """Up to `count` items evenly spaced over the list (e.g. episodes of every task and kind)."""
    if len(items) <= count:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def dream_vs_real(
    model, arrays: EpisodeArrays, episodes, path, examples: int = 4, max_horizon: int = 16, fps: float = 6.0
) -> np.ndarray | None:
    """GIF of real | dreamed (open loop from the episode's first context window) for a few episodes.

    Returns the filmstrip (real row over dreamed row, middle and last imagined frames) for TensorBoard,
    or None when no episode is long enough.
    """
    k, c = model.cfg.frame_skip, model.cfg.context_length - 1
    chosen = spread([e for e in episodes if world_frames(int(arrays.lengths[e]), k) >= c + 1], examples)
    if not chosen:
        return None
    rows, strips = [], []
    for e in chosen:
        horizon = min(max_horizon, world_frames(int(arrays.lengths[e]), k) - c)
        w = gather(arrays, np.array([e]), np.array([0]), c, horizon, k)
        dreamed, _ = rollout(model, w.context, w.context_actions, w.actions)
        last = w.context[:, -1:]  # the clips start at the last real context frame
        real_clip, dream_clip = np.concatenate([last, w.truth], 1)[0], np.concatenate([last, dreamed], 1)[0]
        rows.append([real_clip, dream_clip])
        pick = [0, len(real_clip) // 2, len(real_clip) - 1]
        strips.append(
            np.concatenate([np.concatenate(list(real_clip[pick]), 1), np.concatenate(list(dream_clip[pick]), 1)], 0)
        )
    write_gif(path, labelled_grid(rows, ["real", "dreamed (open loop)"]), fps)
    return np.concatenate(strips, 0)


def held_actions(names: list[str]) -> list[tuple[str, np.ndarray]]:
    """The sheet's held actions (label, float32 [A]): +-1 on one dimension, the others 0. Meta-World's:
    +-dx, +-dy, +dz and close gripper (+1); other action spaces: +-1 on each dimension, the first six."""
    if names == META_WORLD_ACTIONS:
        picks = [(0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (3, 1)]
    else:
        picks = [(i, sign) for i in range(len(names)) for sign in (1, -1)][:SHEET_SEQUENCES]
    held = []
    for i, sign in picks:
        action = np.zeros(len(names), np.float32)
        action[i] = sign
        label = "close gripper" if names[i] == "gripper" and sign > 0 else f"{'+' if sign > 0 else '-'}{names[i]}"
        held.append((label, action))
    return held


def sheet_contexts(dataset: EpisodeDataset, episodes, count: int, span: int) -> list[tuple[int, int]]:
    """Up to `count` (episode, start) windows of `span` recorded frames from the middle of episodes,
    taking the tasks in turn (each task's episodes evenly spread), so the contexts show different tasks."""
    by_task: dict[str, list[int]] = defaultdict(list)
    for e in episodes:
        if dataset.episodes[e].length >= span:
            by_task[dataset.episodes[e].task].append(e)
    turns = zip_longest(*(spread(by_task[task], count) for task in sorted(by_task)))
    chosen = [e for e in chain.from_iterable(turns) if e is not None][:count]
    return [(e, (dataset.episodes[e].length - span) // 2) for e in chosen]


@dataclass
class HeldActionClips:
    """What the model imagines from real contexts under each held action."""

    picks: list[tuple[int, int]]  # (episode, first recorded frame) of each context window
    labels: list[str]  # the held actions (rollout.held_actions)
    clips: np.ndarray  # uint8 [contexts, held actions, 1 + steps, H, W, 3]: last context frame, dreamed steps


@torch.no_grad()
def held_action_clips(model, dataset: EpisodeDataset, episodes, steps: int, contexts: int) -> HeldActionClips:
    """Imagine `steps` steps from up to `contexts` real context windows of `episodes` under each held action
    (no clips: an empty ``picks`` when no episode is long enough)."""
    k, c = model.cfg.frame_skip, model.cfg.context_length - 1
    span = (c - 1) * k + 1
    picks = sheet_contexts(dataset, episodes, contexts, span)
    held = held_actions(dataset.action_names)
    labels = [label for label, _ in held]
    if not picks:
        return HeldActionClips(picks, labels, np.zeros((0, len(held), steps + 1, *dataset.image_shape), np.uint8))
    recorded = [dataset.episode(e) for e, _ in picks]
    context = np.stack([ep.frames[s : s + span : k] for ep, (_, s) in zip(recorded, picks)])  # [n,C,H,W,3]
    context_actions = np.stack([skip_actions(ep.actions[s : s + span - 1], k) for ep, (_, s) in zip(recorded, picks)])
    n, m = len(picks), len(held)
    actions = np.stack([a for _, a in held])[None, :, None].repeat(n, 0).repeat(steps, 2)  # [n,m,steps,A]
    dreamed, _ = rollout(
        model, context.repeat(m, 0), context_actions.repeat(m, 0), actions.reshape(n * m, steps, -1), batch_size=n * m
    )
    clips = np.concatenate([context[:, -1:].repeat(m, 0), dreamed], 1).reshape(n, m, steps + 1, *dreamed.shape[2:])
    return HeldActionClips(picks, labels, clips)


def controllability_sheet(
    model, dataset: EpisodeDataset, episodes, out: Path, steps: int = 8, contexts: int = 2
) -> dict:
    """Imagine `steps` steps from `contexts` real context windows of `episodes` under each held action.

    Writes out/controllability.png (rows: context x held action; columns: the last context frame, then
    the dreamed steps) and out/controllability.gif (the held actions side by side). Returns per held
    action the mean absolute pixel difference (0-255) of its final dreamed frame from the other held
    actions' (divergence) and from the last context frame (change), averaged over the contexts.
    """
    sheet = held_action_clips(model, dataset, episodes, steps, contexts)
    picks, clips = sheet.picks, sheet.clips
    summary = {
        "steps": steps,
        "control_steps": steps * model.cfg.frame_skip,
        "contexts": [{"episode": e, "task": dataset.episodes[e].task, "start": s} for e, s in picks],
    }
    if not picks:
        return summary
    m = len(sheet.labels)
    _write_sheet(out, clips, sheet.labels, [f"{dataset.episodes[e].task} #{e}" for e, _ in picks])
    final = clips[:, :, -1].astype(np.float32)  # [n,m,H,W,3]
    distance = np.abs(final[:, :, None] - final[:, None]).mean((-3, -2, -1)).mean(0)  # [m,m]
    change = np.abs(final - clips[:, :, 0].astype(np.float32)).mean((0, -3, -2, -1))  # [m]
    summary["held_actions"] = {
        label: {"divergence": float(distance[i].sum() / (m - 1)), "change": float(change[i])}
        for i, label in enumerate(sheet.labels)
    }
    summary["mean_pairwise_divergence"] = float(distance[np.triu_indices(m, 1)].mean())
    return summary


def _write_sheet(out: Path, clips: np.ndarray, actions: list[str], contexts: list[str]) -> None:
    """clips uint8 [contexts, held actions, 1 + steps, H, W, 3] -> the sheet's PNG and GIF."""
    out.mkdir(parents=True, exist_ok=True)
    n, m, length = clips.shape[:3]
    cells = [[clip[t : t + 1] for t in range(length)] for clip in clips.reshape(n * m, *clips.shape[2:])]
    rows = [f"{context}: {action}" for context in contexts for action in actions]
    columns = ["context", *(f"+{t}" for t in range(1, length))]
    write_png(out / SHEET_PNG, labelled_grid(cells, columns, row_labels=rows)[0])
    write_gif(out / SHEET_GIF, labelled_grid(clips, actions, row_labels=contexts), 4.0)
