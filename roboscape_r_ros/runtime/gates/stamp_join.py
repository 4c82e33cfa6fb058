"""Pairing two message streams by stamp, in plain Python: reward_publisher joins each dreamed frame
with the dreamer's account of it (done probability, step, episode), which travel on two topics and
arrive in either order.

    join = StampJoin(limit=32)
    join.left(stamp, frame)       # -> the outcome already waiting under this stamp, or None (kept)
    join.right(stamp, outcome)    # -> the frame already waiting under this stamp, or None (kept)

Each side keeps at most ``limit`` unpaired items, forgetting the oldest: a partner that never comes
(a frame lost on a best-effort topic) costs one reward, never memory. ``Seen`` answers "first time?"
for a bounded number of recent keys (a frame sent again is rewarded once).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

L = TypeVar("L")
R = TypeVar("R")


def _remember(buffer: OrderedDict, key: Hashable, value: object, limit: int) -> None:
    buffer[key] = value
    while len(buffer) > limit:
        buffer.popitem(last=False)


class StampJoin(Generic[L, R]):
    def __init__(self, limit: int = 32) -> None:
        self.limit = limit
        self.lefts: OrderedDict[int, L] = OrderedDict()
        self.rights: OrderedDict[int, R] = OrderedDict()

    def left(self, stamp: int, item: L) -> R | None:
        if stamp in self.rights:
            return self.rights.pop(stamp)
        _remember(self.lefts, stamp, item, self.limit)
        return None

    def right(self, stamp: int, item: R) -> L | None:
        if stamp in self.lefts:
            return self.lefts.pop(stamp)
        _remember(self.rights, stamp, item, self.limit)
        return None


class Seen:
    def __init__(self, limit: int = 128) -> None:
        self.limit = limit
        self.keys: OrderedDict[Hashable, None] = OrderedDict()

    def first(self, key: Hashable) -> bool:
        """True the first time ``key`` comes (among the latest ``limit`` keys), else False."""
        if key in self.keys:
            return False
        _remember(self.keys, key, None, self.limit)
        return True
