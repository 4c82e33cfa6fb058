"""Random training windows of T consecutive frames from one episode, as numpy batches.

The dataset is decoded once (``EpisodeDataset.load_arrays``); a batch is then one fancy-index
gather over contiguous arrays, so sampling costs a memory copy, not a decode. Batches are numpy
(``torch.from_numpy`` on them is free) and the same seed gives the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from roboscape_r_ros.data.lerobot import DatasetError
from roboscape_r_ros.data.reader import EpisodeDataset


class WindowError(DatasetError):
    """No window can be drawn as asked (bad split, no episode long enough)."""


def split_episodes(
    episodes: int | Sequence[int] | np.ndarray, held_out_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split episode indices (or ``range(episodes)``) into sorted (train, held_out) by a seed.

    With 0 < fraction < 1 and two or more episodes both parts get at least one episode.
    """
    indices = np.arange(episodes) if isinstance(episodes, int) else np.asarray(episodes, np.int64)
    if not 0.0 <= held_out_fraction <= 1.0:
        raise WindowError(f"held_out_fraction must lie in [0, 1], got {held_out_fraction}")
    count = round(len(indices) * held_out_fraction)
    if 0 < held_out_fraction < 1 and len(indices) >= 2:
        count = min(max(count, 1), len(indices) - 1)
    shuffled = np.random.default_rng(seed).permutation(indices)
    return np.sort(shuffled[count:]), np.sort(shuffled[:count])


class WindowLoader:
    """Uniform random windows over all valid window starts of the chosen episodes.

    ``sample()`` returns::

        frames        uint8   [B,T,H,W,3]
        actions       float32 [B,T,A]
        done          float32 [B,T]
        task_index    int64   [B]
        episode_index int64   [B]

    Episodes shorter than T are skipped and listed in ``skipped_episodes``. With
    ``first_window_share`` > 0 that share of each batch (rounded) is drawn from the windows that start
    at an episode's first frame, e.g. for a model that must learn how episodes begin (the goal model
    imagines from frame 0); the rest stays uniform over all window starts. With ``shard`` (a rank of
    a torchrun group) a batch is those rows of the ``batch_size`` windows drawn: every rank draws the
    same global batch from the same seed and keeps its own rows.
    """

    def __init__(
        self,
        dataset: EpisodeDataset,
        *,
        window: int,
        batch_size: int,
        episodes: Sequence[int] | np.ndarray | None = None,
        seed: int | tuple[int, ...] = 0,
        first_window_share: float = 0.0,
        shard: slice = slice(None),
    ):
        if window < 1 or batch_size < 1:
            raise WindowError(f"window and batch_size must be >= 1, got {window} and {batch_size}")
        if not 0.0 <= first_window_share <= 1.0:
            raise WindowError(f"first_window_share must lie in [0, 1], got {first_window_share}")
        self.first_window_share = first_window_share
        self.window, self.batch_size, self.shard = window, batch_size, shard
        self.data = dataset.load_arrays()
        chosen = np.arange(dataset.num_episodes) if episodes is None else np.asarray(episodes, np.int64)
        if chosen.size and (chosen.min() < 0 or chosen.max() >= dataset.num_episodes):
            raise WindowError(f"{dataset.root}: episode indices must lie in 0..{dataset.num_episodes - 1}")
        if len(np.unique(chosen)) != len(chosen):
            raise WindowError(f"{dataset.root}: episode indices are not unique")

        # load_arrays() holds every episode, so a dataset index is also a position in self.data.
        long_enough = self.data.lengths[chosen] >= window
        self.skipped_episodes = chosen[~long_enough].tolist()
        kept = chosen[long_enough]
        if kept.size == 0:
            raise WindowError(
                f"{dataset.root}: none of the {len(chosen)} chosen episodes has {window} frames "
                f"(longest: {int(self.data.lengths[chosen].max(initial=0))})"
            )
        # Every valid window start as a row of the flat arrays, and the episode it belongs to.
        per_episode = self.data.lengths[kept] - window + 1  # [E]
        self._episode_of = np.repeat(kept, per_episode)  # [W]
        first_window = np.cumsum(per_episode) - per_episode  # [E]
        offset = np.arange(per_episode.sum()) - np.repeat(first_window, per_episode)
        self._starts = self.data.starts[self._episode_of] + offset  # [W]
        self._first_windows = first_window  # [E] index into _starts of each kept episode's frame-0 window
        self._steps = np.arange(window)  # [T]
        self._rng = np.random.default_rng(seed)

    @property
    def num_windows(self) -> int:
        return len(self._starts)

    def sample_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``data`` (``load_arrays()``) of one batch of windows [B,T] and their episodes [B]
        (B: the shard's rows of the batch)."""
        pick = self._rng.integers(0, len(self._starts), self.batch_size)  # [batch_size]
        first = round(self.batch_size * self.first_window_share)
        if first:
            pick[:first] = self._first_windows[self._rng.integers(0, len(self._first_windows), first)]
        pick = pick[self.shard]  # [B]
        return self._starts[pick, None] + self._steps, self._episode_of[pick]

    def sample(self) -> dict[str, np.ndarray]:
        rows, episode = self.sample_rows()  # [B,T], [B]
        return {
            "frames": self.data.frames[rows],
            "actions": self.data.actions[rows],
            "done": self.data.done[rows],
            "task_index": self.data.task_index[episode],
            "episode_index": self.data.episode_index[episode],
        }

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while True:
            yield self.sample()
