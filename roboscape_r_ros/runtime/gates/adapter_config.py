"""Which adapter outputs a controller can execute for an action spec, checked once at start.

policy_controller refuses to start (one line, exit status 2) when an enabled output would carry
commands its controller rejects or misreads: Cartesian action names as joint names, joint actions
on a twist or pose, joints the controller does not have or lacks, DELTA joint targets without joint
feedback, units other than the controller's, an empty frame id. Besides these rules, a sample of
each message (the action at its upper limits) goes through the controller's own checks
(contract/controller_rules.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from roboscape_r_ros.contract import adapters
from roboscape_r_ros.contract.action_spec import MODE_ABSOLUTE, MODE_DELTA, MODE_VELOCITY, ActionSpec
from roboscape_r_ros.contract.controller_rules import (
    Servo,
    controller_joints_problem,
    pose_problem,
    trajectory_problem,
    twist_problem,
)
from roboscape_r_ros.contract.safety import SafetyFilter
from roboscape_r_ros.errors import RoboscapeError

if TYPE_CHECKING:
    from roboscape_r_ros.runtime.gates.controller import PolicyControllerParams

# Our twist is in m/s and rad/s: it is checked as a Servo with command_in_type speed_units reads it.
SERVO = Servo(command_in_type="speed_units")


class AdapterConfigError(RoboscapeError, ValueError):
    """An enabled output whose controller cannot execute this action spec."""


def startup_check(params: PolicyControllerParams) -> tuple[ActionSpec, SafetyFilter]:
    """What policy_controller checks before it loads a policy: the action spec, the safety limits and
    the enabled outputs. A RoboscapeError says what is wrong, in one line."""
    spec = params.action_spec()
    safety = SafetyFilter(spec, params.max_delta, params.workspace)
    check_outputs(params, spec)
    return spec, safety


def check_outputs(params: PolicyControllerParams, spec: ActionSpec) -> None:
    """AdapterConfigError naming the first enabled output a controller cannot execute."""
    checks = {"twist": _twist_problem, "pose": _pose_problem, "trajectory": _trajectory_problem}
    for output, enabled in params.outputs.items():
        problem = checks[output](params, spec) if enabled and output in checks else None
        if problem:
            raise AdapterConfigError(f"publish_{output}: {problem}")


def _sample(spec: ActionSpec) -> np.ndarray:
    """The action at the limit farther from zero in each dimension: a sample that moves every dimension."""
    lower, upper = np.asarray(spec.lower), np.asarray(spec.upper)
    return np.where(np.abs(upper) >= np.abs(lower), upper, lower)


def _unit_suffix(spec: ActionSpec) -> str:
    return "/s" if spec.mode == MODE_VELOCITY else ""


def _cartesian_problem(spec: ActionSpec) -> str | None:
    """Twist and pose carry Cartesian axes in m and rad (m/s, rad/s for velocities); other dimensions
    are dropped, which is right only for those a hold keeps (hold_last: a gripper)."""
    cartesian = adapters.cartesian_names(spec)
    dropped = [name for name, kept in zip(spec.names, spec.hold_mask) if name not in cartesian and not kept]
    if dropped:
        return (
            f"{', '.join(dropped)} {'is not a Cartesian axis' if len(dropped) == 1 else 'are not Cartesian axes'} "
            "(x/dx/vx, y.., z.., roll/droll/wx, pitch.., yaw..): joint actions go to cmd_trajectory"
        )
    if not cartesian:
        return f"no dimension of {list(spec.names)} is a linear or angular axis"
    linear = set().union(*adapters.LINEAR)
    wrong = []
    for name, unit in zip(spec.names, spec.units):
        expected = ("m" if name in linear else "rad") + _unit_suffix(spec)
        if name in cartesian and unit != expected:
            wrong.append(f"{name} in '{unit}' (not '{expected}')")
    if wrong:
        return f"units {', '.join(wrong)}: the command is sent in metres and radians (per second for velocities)"
    return None


def _twist_problem(params: PolicyControllerParams, spec: ActionSpec) -> str | None:
    if spec.mode == MODE_ABSOLUTE:
        return "a twist cannot carry absolute targets"
    problem = _cartesian_problem(spec)
    if problem:
        return problem
    linear, angular = adapters.twist(spec, _sample(spec))
    problem = twist_problem(SERVO, spec.frame_id, linear, angular, stamp_s=0.0, now_s=0.0)
    return f"MoveIt Servo would refuse it: {problem}" if problem else None


def _pose_problem(params: PolicyControllerParams, spec: ActionSpec) -> str | None:
    if spec.mode == MODE_VELOCITY:
        return "a pose target cannot carry velocities"
    problem = _cartesian_problem(spec)
    if problem:
        return problem
    here = adapters.Pose(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
    target = adapters.pose_target(spec, _sample(spec), here)
    problem = pose_problem(SERVO, spec.frame_id, target.position, target.orientation, stamp_s=0.0, now_s=0.0)
    return f"MoveIt Servo would refuse it: {problem}" if problem else None


def _trajectory_problem(params: PolicyControllerParams, spec: ActionSpec) -> str | None:
    controller = params.trajectory_controller
    cartesian = adapters.cartesian_names(spec)
    if cartesian:
        return (
            f"{', '.join(cartesian)} {'is a Cartesian axis' if len(cartesian) == 1 else 'are Cartesian axes'}, "
            "not joints: a joint_trajectory_controller takes joint names (make action_names the arm's joints, "
            "or send Cartesian actions to cmd_twist / cmd_pose)"
        )
    problem = controller_joints_problem(controller.joints)
    if problem:
        return problem
    if spec.mode == MODE_DELTA and not params.joint_state_feedback:
        return (
            "DELTA joint targets are the current joint positions + the action: set joint_state_feedback: true "
            "(sensor_msgs/JointState on `state`, e.g. remapped to /joint_states)"
        )
    names, point = adapters.joint_trajectory(spec, _sample(spec), controller.joints, np.zeros(spec.dim))
    problem = trajectory_problem(controller, names, [point])
    if problem:
        return f"joint_trajectory_controller would refuse it: {problem}"
    expected = {"rad" + _unit_suffix(spec), "m" + _unit_suffix(spec)}
    wrong = [f"{name} in '{unit}'" for name, unit in zip(spec.names, spec.units) if unit not in expected]
    if wrong:
        # ros2_control joint interfaces are SI (REP 103): rad or m, rad/s or m/s.
        return f"units {', '.join(wrong)}: joint_trajectory_controller takes {' or '.join(sorted(expected))}"
    return None
