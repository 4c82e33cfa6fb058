"""MoveIt Servo's command contract for sim_bridge (``command_interface: servo``), without ROS.

How the sim steps: at a fixed rate, one control step per tick of a steady timer, as Servo's loop
and a physics simulator run, not once per message. Each step applies the latest
geometry_msgs/TwistStamped for as long as its stamp is less than ``command_timeout_s`` old on the
simulated clock (Servo's ``incoming_command_timeout``, ServoNode::processTwistCommand); after that
the command is dropped and the arm holds (zero motion) until a fresh one arrives. An episode's
clock starts with its first command (as a paused simulator is unpaused), so an episode is never
spent waiting for a controller that is still starting.

The twist -> Meta-World action: ``linear`` (m/s, in the sim's world frame) x ``scale`` (action
units per m/s). Meta-World moves the hand's mocap target 1 cm per unit per 12.5 ms step, so the
default scale 1.25 is the twist integrated over one step: the hand moves at the commanded speed.

Refused (CommandRejected: nothing changes, the previous command keeps its own timeout):
a frame other than the sim's world frame (Servo would look it up in TF; the sim has no TF), values
that are not finite, an angular velocity (Meta-World's hand keeps its orientation), a speed beyond
the action limits (1 unit per step: refused, never clipped), a stamp older than the timeout or
ahead of the sim's clock (a sender not on ``use_sim_time`` would otherwise never time out).
A command stamped before the current episode began answers the previous one: ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roboscape_r_ros.contract.action_spec import CommandRejected
from roboscape_r_ros.parameters import parameter

# Float rounding of value * scale / period * 1.25 lands a hair above a limit of 1.
_LIMIT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ServoParams:
    """``servo.*`` parameters of sim_bridge: geometry_msgs/TwistStamped commands on ``cmd_twist``."""

    scale: float = parameter(
        1.25,
        "Meta-World action units per m/s of the twist (1 unit = 1 cm per 12.5 ms step): 1.25 makes the hand "
        "move at the commanded speed",
        low=1e-6,
        high=1000.0,
    )
    command_timeout_s: float = parameter(
        0.1,
        "MoveIt Servo's incoming_command_timeout, in simulated time: a twist is applied until its stamp is this "
        "old, then dropped and the arm holds",
        low=1e-3,
        high=3600.0,
    )


@dataclass(frozen=True)
class TwistCommand:
    linear_action: np.ndarray  # float64 [3]: dx, dy, dz in Meta-World action units per step
    stamp_ns: int


class ServoFollower:
    """The latest accepted twist of the current episode and the action each fixed-rate step applies."""

    def __init__(self, params: ServoParams, frame_id: str) -> None:
        self.params, self.frame_id = params, frame_id
        self.timeout_ns = round(params.command_timeout_s * 1e9)
        self.latest: TwistCommand | None = None
        self.episode_start_ns = 0

    def new_episode(self, start_ns: int) -> None:
        """The arm starts a new episode at rest and waits for its first command."""
        self.latest, self.episode_start_ns = None, start_ns

    @property
    def started(self) -> bool:
        """A command was accepted in this episode: its clock runs."""
        return self.latest is not None

    def command(self, *, frame_id: str, stamp_ns: int, linear: np.ndarray, angular: np.ndarray, now_ns: int) -> bool:
        """Take a TwistStamped received at sim time ``now_ns``: True when it is the new command, False
        when it answers an earlier episode; CommandRejected says why it is refused."""
        if frame_id != self.frame_id:
            raise CommandRejected(
                "frame", f"twist in frame '{frame_id}', not the sim's '{self.frame_id}' (the sim has no TF)"
            )
        linear, angular = np.asarray(linear, np.float64), np.asarray(angular, np.float64)
        if not (np.isfinite(linear).all() and np.isfinite(angular).all()):
            raise CommandRejected("nonfinite", f"twist {linear.tolist()} {angular.tolist()} is not finite")
        if np.abs(angular).max() > 0.0:
            raise CommandRejected(
                "angular", f"angular velocity {angular.tolist()} rad/s: Meta-World's hand keeps its orientation"
            )
        action = linear * self.params.scale
        if np.abs(action).max() > 1.0 + _LIMIT_TOLERANCE:
            top = 1.0 / self.params.scale
            raise CommandRejected(
                "range", f"linear velocity {linear.tolist()} m/s beyond the arm's {top:.4g} m/s per axis"
            )
        age_s = (now_ns - stamp_ns) * 1e-9
        if age_s >= self.params.command_timeout_s:
            raise CommandRejected(
                "stale",
                f"twist stamped {age_s:.3g} s before the sim's time, at least command_timeout_s "
                f"({self.params.command_timeout_s:g} s): dropped",
            )
        if age_s < 0.0:
            raise CommandRejected(
                "future",
                f"twist stamped {-age_s:.3g} s ahead of the sim's time (is its sender on use_sim_time?)",
            )
        if stamp_ns < self.episode_start_ns:
            return False
        self.latest = TwistCommand(np.clip(action, -1.0, 1.0), stamp_ns)
        return True

    def linear_action(self, now_ns: int) -> np.ndarray | None:
        """dx, dy, dz for the step taken at sim time ``now_ns``; None when the command has timed out
        (or none came): the arm holds."""
        if self.latest is None or now_ns - self.latest.stamp_ns >= self.timeout_ns:
            return None
        return self.latest.linear_action.copy()
