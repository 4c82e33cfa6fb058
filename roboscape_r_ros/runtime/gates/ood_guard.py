"""Out-of-domain guard: hold the arm while the world model's shadow-mode prediction error stays high.

The dreamer in shadow mode predicts each next real frame from the real context and the actions
taken, and publishes the per-pixel MSE of that prediction (``dream/error``). On scenes the world
model never saw (another table colour, light, camera pose) the error is higher: how much higher,
and how separable, is measured by ``roboscape-r calibrate-ood``, which also proposes the threshold.

    gate = OodGate(threshold=0.004, trip_after=3, release_after=10, hold_timeout_s=10.0)
    gate.update(error)   # -> "hold" when it trips, "release" when it lets go, None otherwise
    gate.tick(now)       # -> True once when a hold has lasted hold_timeout_s: the episode ends
    gate.new_episode()   # a new episode starts the guard afresh (True when it ended a hold)
    gate.holding

A NaN or infinite error counts as above the threshold (a prediction that cannot be scored is no
evidence of being in domain). The gate acts on the errors it gets: while the dreamer is down no
error arrives and the gate keeps its state (the graph's respawn policy restarts the dreamer).

How a hold ends: ``release_after`` errors at or below the threshold, or, since a held arm may make
no new frames to score (a simulator steps only on actions, the dreamer predicts only from them),
``hold_timeout_s``: a hold that lasts that long ends the episode. The arm stays still, errors no
longer release it, and only a new episode does (a new id on ``episode``). policy_controller asks for
one on its ``reset`` service client: sim_bridge's ``reset`` in the sim graph, the lab's episode manager
where the graph's ``episode_reset`` argument names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from roboscape_r_ros.parameters import parameter


@dataclass(frozen=True)
class OodGuardParams:
    threshold: float = parameter(
        0.0,
        "dream/error (per-pixel MSE, intensities in [0, 1]) above which a frame counts as out of domain; "
        "0: no guard (roboscape-r calibrate-ood proposes one)",
        low=0.0,
        high=1.0,
    )
    trip_after: int = parameter(3, "consecutive errors above the threshold that hold the arm", low=1, high=1000)
    release_after: int = parameter(
        10, "consecutive errors at or below the threshold that release the hold", low=1, high=100_000
    )
    hold_timeout_s: float = parameter(
        10.0,
        "a hold that lasts this long ends the episode: the arm stays still until a new episode starts (a new "
        "id on episode), whatever dream/error says (s)",
        low=0.1,
        high=86_400.0,
    )


class OodGate:
    def __init__(self, threshold: float, trip_after: int, release_after: int, hold_timeout_s: float = math.inf) -> None:
        self.threshold, self.trip_after, self.release_after = threshold, trip_after, release_after
        self.hold_timeout_s = hold_timeout_s
        self.holding = False
        self.ended = False  # a hold timed out: the episode is over for the guard
        self.held_since: float | None = None  # when tick first saw the hold
        self.run = 0  # consecutive errors on the side that would change the state

    def update(self, error: float) -> str | None:
        if self.ended:
            return None
        high = not math.isfinite(error) or error > self.threshold
        self.run = self.run + 1 if high != self.holding else 0
        if not self.holding and self.run >= self.trip_after:
            self.holding, self.run = True, 0
            return "hold"
        if self.holding and self.run >= self.release_after:
            self.holding, self.run, self.held_since = False, 0, None
            return "release"
        return None

    def describe(self, change: str, error: float) -> str:
        """The log line of a change that ``update`` returned for ``error``."""
        if change == "hold":
            return (
                f"out-of-domain guard: dream/error above {self.threshold:g} for {self.trip_after} predictions in a "
                f"row (last {error:.4g}): holding the arm"
            )
        return (
            f"out-of-domain guard: dream/error at or below {self.threshold:g} for {self.release_after} predictions: "
            "commands resume"
        )

    def tick(self, now: float) -> bool:
        """Called periodically (monotonic ``now``, s); True once, when a hold has lasted ``hold_timeout_s``."""
        if not self.holding or self.ended:
            return False
        if self.held_since is None:
            self.held_since = now
        self.ended = now - self.held_since >= self.hold_timeout_s
        return self.ended

    def new_episode(self) -> bool:
        """The guard starts afresh; True when this ended a hold."""
        was_holding = self.holding
        self.holding, self.ended, self.held_since, self.run = False, False, None, 0
        return was_holding
