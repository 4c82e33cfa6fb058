"""Multi-rate streams onto the camera clock, and the names their values get in ``observation.state``:
shared by ``import-bag`` (a whole bag at once) and camera_ingest's recording (one episode at a time),
so an imported bag and a recorded session align and name a stream alike.

Hold-last within a maximum age: a frame takes a stream's last message stamped at or before it. It is
missing when there is none, stale when that message is older than the maximum age; either way the
frame is dropped (and counted by its caller).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from roboscape_r_ros.data.message_values import JOINT_STATE


@dataclass(frozen=True)
class Held:
    """One stream held at each frame: row of the message used, its age, and why a frame cannot use it."""

    row: np.ndarray  # int [frames], -1 where missing
    age_ns: np.ndarray  # int64 [frames] (meaningless where missing)
    missing: np.ndarray  # bool [frames]
    stale: np.ndarray  # bool [frames]

    @property
    def usable(self) -> np.ndarray:
        return ~self.missing & ~self.stale


def hold_last(stamps: np.ndarray, at: np.ndarray, max_age_ns: int) -> Held:
    """Hold a stream with increasing ``stamps`` (ns) at the frame stamps ``at`` (ns)."""
    row = np.searchsorted(stamps, at, side="right") - 1
    age = at - stamps[np.maximum(row, 0)] if len(stamps) else np.zeros(len(at), np.int64)
    missing = row < 0
    return Held(row, age, missing, ~missing & (age > max_age_ns))


class NamedStream(Protocol):
    topic: str
    msgtype: str
    names: tuple[str, ...]


def state_names(streams: Iterable[NamedStream]) -> list[str]:
    """``observation.state`` names: ``<joint>.pos`` for JointState positions, ``<topic's last part>.<value>``
    for the others (a PoseStamped on /arm/ee_pose gives ee_pose.x .. ee_pose.qw)."""
    names = []
    for stream in streams:
        prefix = stream.topic.rstrip("/").rsplit("/", 1)[-1]
        if stream.msgtype == JOINT_STATE:
            names += [f"{joint}.pos" for joint in stream.names]
        else:
            names += [f"{prefix}.{name}" for name in stream.names]
    return names
