"""Out-of-domain guard: hold the arm while the world model's shadow-mode prediction error stays high.

The dreamer in shadow mode predicts each next real frame from the real context and the actions
taken, and publishes the per-pixel MSE of that prediction (``dream/error``). On scenes the world
model never saw (another table colour, light, camera pose) the error is higher: how much higher,
and how separable, is measured by ``roboscape-r calibrate-ood``, which also proposes the threshold.

    gate = OodGate(threshold=0.004, trip_after=3, release_after=10)
    gate.update(error)   # -> "hold" when it trips, "release" when it lets go, None otherwise
    gate.holding

A NaN or infinite error counts as above the threshold (a prediction that cannot be scored is no
evidence of being in domain). The gate acts on the errors it gets: while the dreamer is down no
error arrives and the gate keeps its state (the graph's respawn policy restarts the dreamer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from roboscape_r_ros.runtime.parameters import parameter


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


class OodGate:
    def __init__(self, threshold: float, trip_after: int, release_after: int) -> None:
        self.threshold, self.trip_after, self.release_after = threshold, trip_after, release_after
        self.holding = False
        self.run = 0  # consecutive errors on the side that would change the state

    def update(self, error: float) -> str | None:
        high = not math.isfinite(error) or error > self.threshold
        self.run = self.run + 1 if high != self.holding else 0
        if not self.holding and self.run >= self.trip_after:
            self.holding, self.run = True, 0
            return "hold"
        if self.holding and self.run >= self.release_after:
            self.holding, self.run = False, 0
            return "release"
        return None
