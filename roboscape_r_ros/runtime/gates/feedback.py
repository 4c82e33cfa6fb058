"""Feedback from the arm in plain Python: joint positions taken by name, and the latest value of a
feedback topic while it is fresh."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

import numpy as np

from roboscape_r_ros.contract.safety import is_stale
from roboscape_r_ros.errors import RoboscapeError

T = TypeVar("T")


class StateRejected(RoboscapeError):
    """A sensor_msgs/JointState that cannot be read. ``reason`` is a short stable key for throttled logs."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ByName:
    """sensor_msgs/JointState name and position -> positions in the ``wanted`` order, by name, never by
    their place in the message (drivers publish joints in their own order, often alphabetical).
    ``wanted`` None keeps the message's order. The index is computed once per list of names."""

    def __init__(self, wanted: tuple[str, ...] | None) -> None:
        self.wanted = wanted
        self.index: dict[tuple[str, ...], np.ndarray | None] = {}

    def __call__(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        names = tuple(names)
        if names not in self.index:
            place = {name: i for i, name in enumerate(names)}
            wanted = self.wanted or names
            self.index[names] = np.array([place[n] for n in wanted]) if all(n in place for n in wanted) else None
        index = self.index[names]
        if index is None or len(positions) != len(names):
            missing = sorted(set(self.wanted or ()) - set(names))[:5]
            raise StateRejected("names", f"{len(positions)} positions for {len(names)} names, missing {missing}")
        values = np.asarray(positions, np.float64)[index]
        if not np.isfinite(values).all():
            raise StateRejected("nonfinite", "NaN or inf positions")
        return values


class Fresh(Generic[T]):
    """The latest value of a feedback topic and its stamp; ``get`` gives it while the stamp is no older
    than ``stale_after_s`` on the node's clock (as observations are judged)."""

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.value: T | None = None
        self.stamp_s = 0.0

    def set(self, value: T, stamp_ns: int) -> None:
        self.value, self.stamp_s = value, stamp_ns * 1e-9

    def get(self, clock_s: float) -> T | None:
        if self.value is None or is_stale(clock_s, self.stamp_s, self.stale_after_s):
            return None
        return self.value
