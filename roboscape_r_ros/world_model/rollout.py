"""Open-loop rollouts of the action world model from real context windows of recorded episodes.

A window at recorded frame `start` holds `context` world-model frames start, start+k, ... (k =
frame_skip) and the `horizon` frames after them; the model sees the context frames and the actions
between them, then imagines `horizon` steps from the recorded (mean) actions alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from roboscape_r_ros.data.reader import EpisodeArrays
from roboscape_r_ros.world_model.data import skip_actions
from roboscape_r_ros.world_model.media import labelled_grid, write_gif


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


def gather(arrays: EpisodeArrays, episodes: np.ndarray, starts: np.ndarray, context: int, horizon: int,
           frame_skip: int) -> Windows:
    k, n = frame_skip, context + horizon
    rows = arrays.starts[episodes, None] + starts[:, None] + np.arange((n - 1) * k + 1)  # [w,(n-1)k+1]
    kept = rows[:, ::k]  # [w,n]
    actions = skip_actions(arrays.actions[rows[:, :-1]], k)  # [w,n-1,A]
    return Windows(episodes, starts, arrays.frames[kept[:, :context]], actions[:, : context - 1],
                   actions[:, context - 1 :], arrays.frames[kept[:, context:]], arrays.done[kept[:, context:]])


def spread_windows(arrays: EpisodeArrays, episodes, context: int, horizon: int, frame_skip: int,
                   per_episode: int) -> tuple[np.ndarray, np.ndarray]:
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
def rollout(model, context: np.ndarray, context_actions: np.ndarray, actions: np.ndarray,
            batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
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


def dream_vs_real(model, arrays: EpisodeArrays, episodes, path, examples: int = 4, max_horizon: int = 16,
                  fps: float = 6.0) -> np.ndarray | None:
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
        strips.append(np.concatenate([np.concatenate(list(real_clip[pick]), 1),
                                      np.concatenate(list(dream_clip[pick]), 1)], 0))
    write_gif(path, labelled_grid(rows, ["real", "dreamed (open loop)"]), fps)
    return np.concatenate(strips, 0)
