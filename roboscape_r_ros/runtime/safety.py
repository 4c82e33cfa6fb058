"""Safety between a policy and an arm, in plain Python (the policy_controller node only wraps it).

Rules, in the order ``SafetyFilter.check`` applies them:
1. e-stop engaged -> no command (the node publishes one hold when the stop engages, then nothing);
2. policy output of the wrong shape, NaN or inf -> no command;
3. policy output outside the per-dimension limits [lower, upper] -> no command (refused, not clipped:
   an out-of-range output means the policy is off its training distribution);
4. the change from the previous command is clamped to ``max_delta`` per dimension per step
   (the command is published, rate-limited; ``Verdict.rate_limited`` says so).

``Watchdog`` holds when observations stop arriving or arrive with stale stamps: a hold is a
command with zero motion (dims marked ``hold_last``, such as a gripper, keep their last value so
that a held object is not dropped), published once; nothing follows until fresh observations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.runtime.action_spec import ActionSpec


class SafetyConfigError(RoboscapeError, ValueError):
    """Safety limits that cannot be used (wrong length, non-positive rate limit...)."""


@dataclass(frozen=True)
class Verdict:
    command: np.ndarray | None  # float64 [dim] to publish, or None: publish nothing
    reason: str = ""  # stable key when refused: "estop", "shape", "nonfinite", "range"
    message: str = ""
    rate_limited: bool = False

    @property
    def ok(self) -> bool:
        return self.command is not None


class SafetyFilter:
    def __init__(self, spec: ActionSpec, max_delta: Sequence[float]) -> None:
        max_delta = np.asarray(list(max_delta), np.float64)
        if max_delta.shape != (spec.dim,):
            raise SafetyConfigError(
                f"max_delta has {max_delta.size} entries, expected {spec.dim} ({', '.join(spec.names)})"
            )
        if not (np.isfinite(max_delta).all() and (max_delta > 0).all()):
            raise SafetyConfigError(f"max_delta must be positive finite numbers, got {max_delta.tolist()}")
        self.spec = spec
        self.lower = np.asarray(spec.lower, np.float64)
        self.upper = np.asarray(spec.upper, np.float64)
        self.max_delta = max_delta
        self.hold_mask = spec.hold_mask
        self.estop = False
        self.previous = np.zeros(spec.dim)  # the last command published (the hold after a reset)
        self.reset()

    def reset(self) -> None:
        """A new episode: the rate limiter starts from rest (all zeros, gripper included)."""
        self.previous = np.zeros(self.spec.dim)

    def hold_command(self) -> np.ndarray:
        """Zero motion; ``hold_last`` dims keep their last commanded value."""
        command = np.zeros(self.spec.dim)
        command[self.hold_mask] = self.previous[self.hold_mask]
        return command

    def hold(self) -> np.ndarray:
        """The hold command, remembered as the last command (the rate limiter ramps up from it)."""
        self.previous = self.hold_command()
        return self.previous.copy()

    def set_estop(self, engaged: bool) -> bool:
        """Returns True when the state changed."""
        changed = engaged != self.estop
        self.estop = engaged
        return changed

    def check(self, raw: object) -> Verdict:
        if self.estop:
            return Verdict(None, "estop", "e-stop engaged: no command")
        try:
            action = np.asarray(raw, np.float64)
        except (TypeError, ValueError):
            return Verdict(None, "shape", f"policy output {raw!r} is not a numeric vector")
        if action.shape != (self.spec.dim,):
            return Verdict(None, "shape", f"policy output has shape {action.shape}, expected ({self.spec.dim},)")
        if not np.isfinite(action).all():
            return Verdict(None, "nonfinite", f"policy output {action.tolist()} is not finite: no command")
        outside = (action < self.lower) | (action > self.upper)
        if outside.any():
            dims = ", ".join(
                f"{self.spec.names[i]}={action[i]:.4g} not in [{self.lower[i]:g}, {self.upper[i]:g}]"
                for i in np.flatnonzero(outside)
            )
            return Verdict(None, "range", f"policy output out of range ({dims}): no command")
        change = np.clip(action - self.previous, -self.max_delta, self.max_delta)
        limited = bool((np.abs(action - self.previous) > self.max_delta + 1e-12).any())
        command = self.previous + change
        self.previous = command
        return Verdict(command.copy(), rate_limited=limited)


class Watchdog:
    """Expires when no fresh observation was fed for ``timeout_s`` (times from a monotonic clock)."""

    def __init__(self, timeout_s: float) -> None:
        if not timeout_s > 0:
            raise SafetyConfigError(f"the watchdog timeout must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self.last_feed: float | None = None

    def feed(self, now: float) -> None:
        self.last_feed = now

    def expired(self, now: float) -> bool:
        return self.last_feed is not None and now - self.last_feed > self.timeout_s

    def age(self, now: float) -> float:
        return float("inf") if self.last_feed is None else now - self.last_feed


def stamp_age(now_s: float, stamp_s: float) -> float:
    """Age of an observation stamp on the node's clock (negative when the stamp is ahead of it)."""
    return now_s - stamp_s


def is_stale(now_s: float, stamp_s: float, stale_after_s: float) -> bool:
    """A stamp older than ``stale_after_s``. Stamps ahead of the clock (a sim clock not yet received,
    small skew between machines) are not stale."""
    return stamp_age(now_s, stamp_s) > stale_after_s
