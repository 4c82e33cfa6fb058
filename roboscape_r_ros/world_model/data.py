"""Training and evaluation data of the world model: split, frame-skipped windows, precomputed tokens.

One world-model step is `frame_skip` control steps: a window of T world-model frames spans
(T-1)*frame_skip+1 recorded frames, of which every frame_skip-th is kept, and the action between two
kept frames is the mean of the frame_skip recorded actions in between (exact for an action held
frame_skip steps, the net displacement for Meta-World's delta actions). Windows lie fully inside
one episode (no padding by repeated frames); every phase of the subsampling is drawn.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from roboscape_r_ros.data.lerobot import EpisodeMeta
from roboscape_r_ros.data.reader import EpisodeArrays, EpisodeDataset
from roboscape_r_ros.data.windows import WindowLoader, split_episodes


def stratified_split(
    episodes: Sequence[EpisodeMeta], held_out_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Episode indices (train, held_out) of a dataset's ``episodes``, split within every (task, kind) group so
    the held-out set has each kind of each task wherever the group has two or more episodes."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for meta in episodes:
        groups[(meta.task, meta.kind)].append(meta.index)
    train: list[int] = []
    held_out: list[int] = []
    for (task, kind), members in sorted(groups.items()):
        group_seed = (seed * 1_000_003 + zlib.crc32(f"{task}/{kind}".encode())) % 2**32
        t, h = split_episodes(members, held_out_fraction, group_seed)
        train += t.tolist()
        held_out += h.tolist()
    return sorted(train), sorted(held_out)


def skip_actions(actions: np.ndarray, frame_skip: int) -> np.ndarray:
    """Recorded actions [..., (n-1)*k, A] between n kept frames -> world-model actions [..., n-1, A] (means)."""
    *lead, steps, dim = actions.shape
    return actions.reshape(*lead, steps // frame_skip, frame_skip, dim).mean(-2)


class SkipWindows:
    """Random batches of T world-model frames `frame_skip` recorded frames apart, as loader batches:

    frames uint8 [B,T,H,W,3], and their own token ids [B,T,N] when `tokens` [frames,N] is given
    actions float32 [B,T,A] (a_t leads from frame t to t+1; the last one is zero, unused)
    done float32 [B,T], labelled bool [B] (done known), task_index int64 [B], episode_index int64 [B]
    (B: batch_size, or the `shard`'s rows of it; see WindowLoader)
    """

    def __init__(
        self,
        dataset: EpisodeDataset,
        *,
        context_length: int,
        frame_skip: int,
        batch_size: int,
        episodes: list[int] | np.ndarray | None = None,
        seed: int | tuple[int, ...] = 0,
        first_window_share: float = 0.0,
        tokens: np.ndarray | None = None,
        shard: slice = slice(None),
    ):
        self.T, self.k = context_length, frame_skip
        self.loader = WindowLoader(
            dataset,
            window=(context_length - 1) * frame_skip + 1,
            batch_size=batch_size,
            episodes=episodes,
            seed=seed,
            first_window_share=first_window_share,
            shard=shard,
        )
        self.data: EpisodeArrays = self.loader.data
        self.tokens = tokens

    def sample(self) -> dict[str, np.ndarray]:
        rows, episode = self.loader.sample_rows()  # [B,(T-1)k+1], [B]
        kept = rows[:, :: self.k]  # [B,T]
        actions = skip_actions(self.data.actions[rows[:, :-1]], self.k)  # [B,T-1,A]
        actions = np.concatenate([actions, np.zeros_like(actions[:, :1])], 1)
        batch = {
            "actions": actions.astype(np.float32),
            "done": self.data.done[kept],
            "labelled": self.data.labelled[episode],
            "task_index": self.data.task_index[episode],
            "episode_index": self.data.episode_index[episode],
        }
        batch["frames"] = self.data.frames[kept]
        if self.tokens is not None:
            batch["tokens"] = self.tokens[kept]
        return batch

    def __iter__(self):
        while True:
            yield self.sample()


@torch.no_grad()
def encode_frames(model, frames: np.ndarray, batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """All frames uint8 [F,H,W,3] -> token ids [F,N] (int16 when the codebook allows) with the tokenizer."""
    was_training = model.training
    model.eval()
    dtype = np.int16 if model.tokenizer.vocab_size <= np.iinfo(np.int16).max else np.int32
    out = np.empty((len(frames), model.grid**2), dtype)
    for start in tqdm(
        range(0, len(frames), batch_size),
        desc="world model: tokenizing frames",
        disable=not progress,
        dynamic_ncols=True,
        unit="batch",
    ):
        chunk = torch.from_numpy(frames[start : start + batch_size])
        out[start : start + len(chunk)] = model.tokens(chunk).cpu().numpy()
    model.train(was_training)
    return out
