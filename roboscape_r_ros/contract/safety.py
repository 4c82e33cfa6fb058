"""Safety between a policy and an arm, in plain Python (the policy_controller node only wraps it).

Rules, in the order ``SafetyFilter.check`` applies them:
1. e-stop engaged -> no command (the node publishes one hold when the stop engages, then nothing);
2. policy output of the wrong shape, NaN or inf -> no command;
3. policy output outside the per-dimension limits [lower, upper] -> no command (refused, not clipped:
   an out-of-range output means the policy is off its training distribution);
4. the change from the previous command is clamped to ``max_delta`` per dimension per step
   (the command is published, rate-limited; ``Verdict.rate_limited`` says so);
5. with workspace limits (``WorkspaceLimits``, an end-effector box): a command that would take the
   end effector out of the box is clipped to it or refused (``on_exit``); without a fresh
   end-effector pose no command at all. Both refusals ask for a hold (``Verdict.hold``).

``Watchdog`` holds when observations stop arriving or arrive with stale stamps: a hold is a
command with zero motion (dims marked ``hold_last``, such as a gripper, keep their last value so
that a held object is not dropped), published once; nothing follows until fresh observations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from roboscape_r_ros.contract import adapters
from roboscape_r_ros.contract.action_spec import MODE_ABSOLUTE, MODE_VELOCITY, ActionSpec
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.parameters import parameter


class SafetyConfigError(RoboscapeError, ValueError):
    """Safety limits that cannot be used (wrong length, non-positive rate limit...)."""


@dataclass(frozen=True)
class Verdict:
    command: np.ndarray | None  # float64 [dim] to publish, or None: publish nothing
    reason: str = ""  # stable key when refused: "estop", "shape", "nonfinite", "range", "workspace", "no-ee-pose"
    message: str = ""
    rate_limited: bool = False
    clipped: bool = False  # moved back into the workspace box
    hold: bool = False  # refused, and the arm must hold (it may be moving on the previous command)

    @property
    def ok(self) -> bool:
        return self.command is not None


@dataclass(frozen=True)
class WorkspaceLimits:
    """An end-effector box: the ``workspace.*`` parameters of policy_controller."""

    enabled: bool = parameter(False, "keep the end effector inside the box [lower, upper] (needs a fresh ee_pose)")
    frame_id: str = parameter("world", "frame of the box, of ee_pose and of the action (frame_id)")
    lower: tuple[float, ...] = parameter((-1.0, -1.0, 0.0), "lowest x, y, z of the end effector (m)")
    upper: tuple[float, ...] = parameter((1.0, 1.0, 1.0), "highest x, y, z of the end effector (m)")
    on_exit: Literal["clip", "refuse"] = parameter(
        "refuse", "a command that would leave the box: clip it to the box, or refuse it and hold"
    )


class Workspace:
    """Keeps the end effector's predicted position in the box. The prediction is the current position
    moved by the command's linear dimensions (DELTA: value * scale; VELOCITY: value * scale * period;
    ABSOLUTE: the target itself). Along an axis where the hand is already outside, the command may
    bring it back toward the box, never farther out."""

    def __init__(self, spec: ActionSpec, limits: WorkspaceLimits) -> None:
        lower, upper = np.asarray(limits.lower, np.float64), np.asarray(limits.upper, np.float64)
        if lower.shape != (3,) or upper.shape != (3,) or not np.isfinite([*lower, *upper]).all():
            raise SafetyConfigError("workspace.lower and workspace.upper take three finite numbers each (x, y, z)")
        if not (lower < upper).all():
            raise SafetyConfigError(f"workspace.lower {lower.tolist()} must be below workspace.upper {upper.tolist()}")
        if limits.frame_id != spec.frame_id:
            raise SafetyConfigError(
                f"workspace.frame_id '{limits.frame_id}' is not the action's frame_id '{spec.frame_id}'"
            )
        self.axes = [(axis, i) for axis, i in enumerate(adapters.linear_axes(spec)) if i is not None]
        if not self.axes:
            raise SafetyConfigError(
                f"workspace limits need Cartesian actions (x/dx/vx...), not {', '.join(spec.names)}: the "
                "end effector's place after a joint command needs forward kinematics"
            )
        self.spec, self.limits, self.lower, self.upper = spec, limits, lower, upper
        scale = np.asarray(spec.scale, np.float64)
        # metres moved (or, ABSOLUTE, the coordinate reached) per unit of value, per action dimension
        self.metres = scale * spec.period_s if spec.mode == MODE_VELOCITY else scale

    def apply(self, command: np.ndarray, position: np.ndarray | None) -> Verdict:
        """``command`` after the box (clipped) or a refusal asking for a hold; ``position`` is the end
        effector's current position in the box's frame, None when there is no fresh one."""
        if position is None:
            return Verdict(
                None, "no-ee-pose", "no fresh ee_pose while workspace limits are on: holding, no command", hold=True
            )
        command = command.copy()
        clipped = []
        for axis, i in self.axes:
            here = position[axis]
            low, high = min(self.lower[axis], here), max(self.upper[axis], here)
            start = 0.0 if self.spec.mode == MODE_ABSOLUTE else here
            target = start + command[i] * self.metres[i]
            if low <= target <= high:
                continue
            if self.limits.on_exit == "refuse":
                return Verdict(
                    None,
                    "workspace",
                    f"{self.spec.names[i]} would take the end effector to {'xyz'[axis]}={target:.4g} m, outside "
                    f"the workspace [{self.lower[axis]:g}, {self.upper[axis]:g}] in {self.limits.frame_id}: holding",
                    hold=True,
                )
            command[i] = (np.clip(target, low, high) - start) / self.metres[i]
            clipped.append(f"{'xyz'[axis]}={target:.4g} m")
        message = f"clipped to the workspace box ({', '.join(clipped)} was outside)" if clipped else ""
        return Verdict(command, message=message, clipped=bool(clipped))


class SafetyFilter:
    def __init__(
        self, spec: ActionSpec, max_delta: Sequence[float], workspace: WorkspaceLimits = WorkspaceLimits()
    ) -> None:
        delta = np.asarray(list(max_delta), np.float64)
        if delta.shape != (spec.dim,):
            raise SafetyConfigError(
                f"max_delta has {delta.size} entries, expected {spec.dim} ({', '.join(spec.names)})"
            )
        if not (np.isfinite(delta).all() and (delta > 0).all()):
            raise SafetyConfigError(f"max_delta must be positive finite numbers, got {delta.tolist()}")
        self.spec = spec
        self.lower = np.asarray(spec.lower, np.float64)
        self.upper = np.asarray(spec.upper, np.float64)
        self.max_delta = delta
        self.hold_mask = spec.hold_mask
        self.workspace = Workspace(spec, workspace) if workspace.enabled else None
        self.estop: bool | None = None  # None: no value heard yet, which stops like an engaged e-stop
        self.previous: np.ndarray = np.zeros(spec.dim)  # the last command published (the hold after a reset)
        self.reset()

    def describe(self) -> str:
        if self.workspace is None:
            return "no workspace limits"
        w = self.workspace.limits
        return f"workspace {list(w.lower)}..{list(w.upper)} m in {w.frame_id} ({w.on_exit} on exit)"

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

    @property
    def stopped(self) -> bool:
        """The e-stop is engaged, or its state is not known yet."""
        return self.estop is not False

    def set_estop(self, engaged: bool) -> bool:
        """Returns True when the state changed (the first value heard always changes it)."""
        changed = engaged != self.estop
        self.estop = engaged
        return changed

    def check(self, raw: object, ee_position: np.ndarray | None = None) -> Verdict:
        """The command to publish for policy output ``raw``; ``ee_position``: the end effector's current
        position (x, y, z in the workspace frame), None when there is no fresh one (read only with
        workspace limits)."""
        if self.stopped:
            return Verdict(None, "estop", "e-stop engaged or not heard yet: no command")
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
        boxed = Verdict(command) if self.workspace is None else self.workspace.apply(command, ee_position)
        if boxed.command is None:  # refused (not boxed.ok)
            return boxed
        self.previous = boxed.command
        return Verdict(boxed.command.copy(), message=boxed.message, rate_limited=limited, clipped=boxed.clipped)


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
