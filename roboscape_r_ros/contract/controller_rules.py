"""What ros2_control's joint_trajectory_controller and MoveIt Servo accept, as checks on plain numbers.

Each rule cites the upstream function it was taken from, on the ``kilted`` branches of
ros-controls/ros2_controllers and moveit/moveit2. Neither runs here: test/test_controller_rules.py
checks the rules, and policy_controller runs them at start on a sample of every message it would
send (runtime/gates/adapter_config.py), so that a combination the controller would reject is refused
before the arm is commanded at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from roboscape_r_ros.parameters import parameter

FLOAT32_EPSILON = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class TrajectoryController:
    """The settings of the joint_trajectory_controller that receives cmd_trajectory: copy them from its
    YAML (names as there; defaults are the controller's own defaults on Kilted)."""

    joints: tuple[str, ...] = parameter(
        (), "the controller's joints in its order (its `joints` parameter): cmd_trajectory's joint_names"
    )
    allow_partial_joints_goal: bool = parameter(False, "the controller accepts trajectories for some of its joints")
    allow_integration_in_goal_trajectories: bool = parameter(
        False, "the controller accepts points without positions (velocities only)"
    )
    allow_nonzero_velocity_at_trajectory_end: bool = parameter(
        False, "the controller accepts a trajectory whose last point still moves"
    )


@dataclass(frozen=True)
class TrajectoryPoint:
    positions: tuple[float, ...] = ()
    velocities: tuple[float, ...] = ()
    accelerations: tuple[float, ...] = ()
    effort: tuple[float, ...] = ()
    time_from_start_s: float = 0.0


def controller_joints_problem(joints: Sequence[str]) -> str | None:
    # joint_trajectory_controller/src/joint_trajectory_controller_parameters.yaml, `joints`:
    # validation unique<> and size_gt<>[0] (the controller does not configure otherwise).
    if not joints:
        return "trajectory_controller.joints is empty: list the controller's joints in its order"
    duplicates = sorted({name for name in joints if list(joints).count(name) > 1})
    if duplicates:
        return f"trajectory_controller.joints names {', '.join(duplicates)} more than once"
    return None


def trajectory_problem(
    controller: TrajectoryController,
    joint_names: Sequence[str],
    points: Sequence[TrajectoryPoint],
    *,
    start_s: float = 0.0,
    now_s: float = 0.0,
) -> str | None:
    """Why the controller would drop this trajectory_msgs/JointTrajectory, or None. ``start_s`` is
    header.stamp (0: start now), ``now_s`` the controller's clock. The order of the checks is upstream's:
    ros2_controllers joint_trajectory_controller/src/joint_trajectory_controller.cpp,
    JointTrajectoryController::validate_trajectory_msg, unless a comment says otherwise."""
    joint_names = list(joint_names)
    if not controller.allow_partial_joints_goal and len(joint_names) != len(controller.joints):
        return (
            f"{len(joint_names)} joints for a controller of {len(controller.joints)} "
            f"(allow_partial_joints_goal is false): {joint_names} vs {list(controller.joints)}"
        )
    if not joint_names:
        return "empty joint_names"
    if not points:
        return "a trajectory without points"
    unknown = [name for name in joint_names if name not in controller.joints]
    if unknown:
        return f"joints {unknown} are not the controller's joints {list(controller.joints)}"
    # Not checked by validate_trajectory_msg: sort_to_local_joint_order (same file) maps the message
    # onto the controller's joints by name (trajectory.hpp, mapping), so a name given twice writes two
    # values into one joint and leaves another without one.
    duplicates = sorted({name for name in joint_names if joint_names.count(name) > 1})
    if duplicates:
        return f"joint_names {duplicates} appear more than once"
    last = points[-1]
    if not controller.allow_nonzero_velocity_at_trajectory_end and any(
        abs(v) > FLOAT32_EPSILON for v in last.velocities
    ):
        return "the last point has a non-zero velocity (allow_nonzero_velocity_at_trajectory_end is false)"
    if start_s != 0.0 and start_s + last.time_from_start_s < now_s:
        return f"the trajectory starts at {start_s:.3f} s and ends in the past (now {now_s:.3f} s)"
    n = len(joint_names)
    for i, point in enumerate(points):
        if i > 0 and point.time_from_start_s <= points[i - 1].time_from_start_s:
            return f"time_from_start of points {i - 1} and {i} is not strictly increasing"
        fields = {"positions": point.positions, "velocities": point.velocities, "accelerations": point.accelerations}
        required: tuple[str, ...]
        if controller.allow_integration_in_goal_trajectories:
            if not any(fields.values()):
                return f"point {i} has no positions, velocities or accelerations"
            required = ()
        else:
            required = ("positions",)
        for name, values in fields.items():
            if (values or name in required) and len(values) != n:
                return f"point {i} has {len(values)} {name} for {n} joint_names"
        # Effort is refused unless the controller commands effort; we never send effort.
        if point.effort:
            return f"point {i} has effort values (only for controllers with an effort command interface)"
    return None


@dataclass(frozen=True)
class Servo:
    """The MoveIt Servo settings a command is checked against (moveit_servo/config/servo_parameters.yaml)."""

    command_in_type: Literal["unitless", "speed_units"] = "unitless"  # upstream default
    incoming_command_timeout_s: float = 0.1  # upstream default


def _servo_command_problem(servo: Servo, frame_id: str, values: np.ndarray, stamp_s: float, now_s: float) -> str | None:
    # moveit_servo/src/utils/common.cpp, isValidCommand(TwistCommand) / isValidCommand(PoseCommand):
    # an empty frame_id or a NaN/inf value makes the command INVALID.
    if not frame_id:
        return "header.frame_id is empty (MoveIt Servo needs the frame the command is expressed in)"
    if not np.isfinite(values).all():
        return "the command is not finite"
    # moveit_servo/src/servo_node.cpp, ServoNode::processTwistCommand / processPoseCommand: a command
    # stamped incoming_command_timeout or more before now is stale; Servo halts instead.
    if now_s - stamp_s >= servo.incoming_command_timeout_s:
        return (
            f"the stamp is {now_s - stamp_s:.3g} s old, at least incoming_command_timeout "
            f"({servo.incoming_command_timeout_s:g} s): Servo halts"
        )
    return None


def twist_problem(
    servo: Servo,
    frame_id: str,
    linear: Sequence[float] | np.ndarray,
    angular: Sequence[float] | np.ndarray,
    *,
    stamp_s: float,
    now_s: float,
) -> str | None:
    """Why MoveIt Servo would not execute this geometry_msgs/TwistStamped, or None. A frame other than
    the planning frame is transformed into it by TF (moveit_servo/src/servo.cpp, Servo::toPlanningFrame):
    whether TF knows the frame is not checked here."""
    velocities = np.asarray([*linear, *angular], np.float64)
    problem = _servo_command_problem(servo, frame_id, velocities, stamp_s, now_s)
    if problem:
        return problem
    # moveit_servo/config/servo_parameters.yaml, command_in_type: unitless commands are in [-1, 1]
    # (as from a joystick) and scaled by scale.linear / scale.rotational (utils/command.cpp,
    # jointDeltaFromTwist); speed_units are m/s and rad/s.
    if servo.command_in_type == "unitless" and (np.abs(velocities) > 1.0).any():
        return "command_in_type unitless takes values in [-1, 1]; this twist is in m/s and rad/s (use speed_units)"
    return None


def pose_problem(
    servo: Servo,
    frame_id: str,
    position: Sequence[float] | np.ndarray,
    orientation: Sequence[float] | np.ndarray,
    *,
    stamp_s: float,
    now_s: float,
) -> str | None:
    """Why MoveIt Servo would not track this geometry_msgs/PoseStamped, or None."""
    values = np.asarray([*position, *orientation], np.float64)
    problem = _servo_command_problem(servo, frame_id, values, stamp_s, now_s)
    if problem:
        return problem
    # isValidCommand(Eigen::Isometry3d) in utils/common.cpp: the rotation must be a rotation.
    if abs(np.linalg.norm(orientation) - 1.0) > 1e-6:
        return f"the orientation {list(orientation)} is not a unit quaternion"
    return None
