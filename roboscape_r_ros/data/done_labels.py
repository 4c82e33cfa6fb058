"""Self-supervised done labels (RoboScape-R): no annotation, only where each sub-task was finished.

Inside a sub-task segment of N frames (k = 0..N-1, the last frame is the first one that shows
the sub-task done) the label is d_k = exp(4 * (k / (N - 1) - 1)): it rises smoothly to 1.0 at the
segment end. Frames after the last sub-task is done are labelled 1.0. Frames of a sub-task that
was never finished (a failed or random episode) are labelled 0.0, so a done head learns not to
fire on failure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class DoneLabelError(ValueError):
    """Sub-task end frames that do not fit the episode."""


def segment_done_curve(length: int) -> np.ndarray:
    """float32 [length]: exp(4 * (k / (length - 1) - 1)); a one-frame segment is [1.0]."""
    if length < 1:
        raise DoneLabelError(f"a segment needs at least one frame, got length {length}")
    if length == 1:
        return np.ones(1, dtype=np.float32)
    k = np.arange(length, dtype=np.float64)
    return np.exp(4.0 * (k / (length - 1) - 1.0)).astype(np.float32)


def done_labels(
    num_frames: int, done_frames: Sequence[int] | np.ndarray, num_subtasks: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Done labels and sub-task indices for one episode.

    num_frames: T, the episode length in frames.
    done_frames: for each finished sub-task in order, the index of the first frame that shows it
        done (strictly increasing); empty when not even the first sub-task was finished.
    num_subtasks: sub-tasks of the task (Meta-World: 1).
    Returns done float32 [T] and subtask_index int64 [T].
    """
    ends = [int(f) for f in done_frames]
    if len(ends) > num_subtasks:
        raise DoneLabelError(f"{len(ends)} sub-task end frames given for a task of {num_subtasks} sub-tasks")
    if any(not 0 <= f < num_frames for f in ends) or any(a >= b for a, b in zip(ends, ends[1:])):
        raise DoneLabelError(f"sub-task end frames {ends} must increase strictly within 0..{num_frames - 1}")
    done = np.zeros(num_frames, dtype=np.float32)
    subtask = np.zeros(num_frames, dtype=np.int64)
    start = 0
    for index, end in enumerate(ends):
        done[start : end + 1] = segment_done_curve(end + 1 - start)
        subtask[start : end + 1] = index
        start = end + 1
    if len(ends) == num_subtasks:  # all finished: the rest of the episode stays done
        done[start:] = 1.0
        subtask[start:] = num_subtasks - 1
    else:
        subtask[start:] = len(ends)
    return done, subtask
