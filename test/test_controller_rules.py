"""Adapters a controller accepts (no ROS): the rules of joint_trajectory_controller and MoveIt Servo
(contract/controller_rules.py), the joint-space trajectory mapped by name, the start-up refusals of
policy_controller (runtime/gates/adapter_config.py), joint feedback by name, and workspace limits."""

import dataclasses

import numpy as np
import pytest

from roboscape_r_ros.contract import adapters
from roboscape_r_ros.contract.action_spec import MODE_ABSOLUTE, MODE_DELTA, MODE_VELOCITY, ActionSpec
from roboscape_r_ros.contract.controller_rules import (
    Servo,
    TrajectoryController,
    TrajectoryPoint,
    controller_joints_problem,
    pose_problem,
    trajectory_problem,
    twist_problem,
)
from roboscape_r_ros.contract.safety import SafetyConfigError, SafetyFilter, WorkspaceLimits
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.runtime.gates.adapter_config import startup_check
from roboscape_r_ros.runtime.gates.controller import PolicyControllerParams
from roboscape_r_ros.runtime.gates.feedback import ByName, Fresh, StateRejected

UR5E = (
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
)
JTC = TrajectoryController(joints=UR5E)


def point(positions=(0.0,) * 6, t=0.1, **fields):
    return TrajectoryPoint(positions=tuple(positions), time_from_start_s=t, **fields)


# -- joint_trajectory_controller ----------------------------------------------------------------------
def test_a_full_position_point_in_any_joint_order_is_accepted():
    assert trajectory_problem(JTC, UR5E, [point()]) is None
    assert trajectory_problem(JTC, UR5E[::-1], [point(), point(t=0.2)]) is None  # the controller sorts by name
    assert trajectory_problem(JTC, UR5E, [point(velocities=(0.0,) * 6)]) is None  # a last point at rest


@pytest.mark.parametrize(
    "names, points, expected",
    [
        (UR5E[:5], [point((0.0,) * 5)], "5 joints for a controller of 6"),
        (UR5E, [], "without points"),
        (("dx", *UR5E[1:]), [point()], "['dx'] are not the controller's joints"),
        ((UR5E[0], *UR5E[:5]), [point()], "appear more than once"),
        (UR5E, [point(velocities=(0.1,) + (0.0,) * 5)], "non-zero velocity"),
        (UR5E, [point(t=0.2), point(t=0.2)], "not strictly increasing"),
        (UR5E, [point(t=0.2), point(t=0.1)], "not strictly increasing"),
        (UR5E, [TrajectoryPoint(velocities=(0.0,) * 6, time_from_start_s=0.1)], "0 positions for 6"),
        (UR5E, [point((0.0,) * 5)], "5 positions for 6"),
        (UR5E, [point(accelerations=(0.0,) * 3)], "3 accelerations for 6"),
        (UR5E, [point(effort=(1.0,) * 6)], "effort"),
    ],
)
def test_trajectories_the_controller_drops(names, points, expected):
    assert expected in trajectory_problem(JTC, names, points)


def test_controller_settings_relax_their_rules():
    velocity_only = [TrajectoryPoint(velocities=(0.3,) * 6, time_from_start_s=0.1)]
    assert "non-zero velocity" in trajectory_problem(JTC, UR5E, velocity_only)
    ends_moving = dataclasses.replace(JTC, allow_nonzero_velocity_at_trajectory_end=True)
    assert "0 positions for 6" in trajectory_problem(ends_moving, UR5E, velocity_only)
    both = dataclasses.replace(ends_moving, allow_integration_in_goal_trajectories=True)
    assert trajectory_problem(both, UR5E, velocity_only) is None
    assert "no positions, velocities" in trajectory_problem(both, UR5E, [TrajectoryPoint(time_from_start_s=0.1)])
    partial = dataclasses.replace(JTC, allow_partial_joints_goal=True)
    assert trajectory_problem(partial, UR5E[:2], [point((0.0, 0.0))]) is None
    assert "empty joint_names" in trajectory_problem(partial, (), [point(())])


def test_a_stamped_trajectory_must_not_end_in_the_past():
    assert trajectory_problem(JTC, UR5E, [point()], start_s=0.0, now_s=1000.0) is None  # 0: start now
    assert "ends in the past" in trajectory_problem(JTC, UR5E, [point(t=0.1)], start_s=999.8, now_s=1000.0)
    assert trajectory_problem(JTC, UR5E, [point(t=0.5)], start_s=999.8, now_s=1000.0) is None


def test_controller_joints_must_be_given_once_each():
    assert controller_joints_problem(UR5E) is None
    assert "is empty" in controller_joints_problem(())
    assert "elbow_joint more than once" in controller_joints_problem((*UR5E, "elbow_joint"))


# -- MoveIt Servo ---------------------------------------------------------------------------------------
SPEED = Servo(command_in_type="speed_units")


def test_servo_twist_rules():
    assert twist_problem(SPEED, "panda_link0", (0.2, 0, 0), (0, 0, 0.5), stamp_s=10.0, now_s=10.05) is None
    assert "frame_id is empty" in twist_problem(SPEED, "", (0.2, 0, 0), (0, 0, 0), stamp_s=10.0, now_s=10.0)
    assert "not finite" in twist_problem(SPEED, "panda_link0", (np.nan, 0, 0), (0, 0, 0), stamp_s=10.0, now_s=10.0)
    assert "Servo halts" in twist_problem(SPEED, "panda_link0", (0, 0, 0), (0, 0, 0), stamp_s=10.0, now_s=10.15)
    assert "Servo halts" in twist_problem(SPEED, "panda_link0", (0, 0, 0), (0, 0, 0), stamp_s=0.0, now_s=10.0)
    unitless = Servo()
    assert twist_problem(unitless, "panda_link0", (0.5, 0, 0), (0, 0, 0), stamp_s=1.0, now_s=1.0) is None
    assert "use speed_units" in twist_problem(unitless, "panda_link0", (1.6, 0, 0), (0, 0, 0), stamp_s=1.0, now_s=1.0)


def test_servo_pose_rules():
    here = dict(stamp_s=5.0, now_s=5.0)
    assert pose_problem(SPEED, "panda_link0", (0.3, 0, 0.5), (0, 0, 0, 1), **here) is None
    assert "frame_id is empty" in pose_problem(SPEED, "", (0.3, 0, 0.5), (0, 0, 0, 1), **here)
    assert "unit quaternion" in pose_problem(SPEED, "panda_link0", (0.3, 0, 0.5), (0, 0, 0, 2), **here)


# -- the joint-space trajectory ---------------------------------------------------------------------------
def joint_spec(mode=MODE_ABSOLUTE, names=UR5E, units=None):
    n = len(names)
    units = units or (("rad/s",) if mode == MODE_VELOCITY else ("rad",)) * n
    return ActionSpec(names, units, (0.1,) * n, (-1.0,) * n, (1.0,) * n, mode, 0.1, "base_link")


def test_joint_trajectory_takes_values_by_name_in_the_controllers_order():
    spec = joint_spec(names=UR5E[::-1])  # the policy's own order
    values = np.arange(6.0)  # value i belongs to spec.names[i]
    names, absolute = adapters.joint_trajectory(spec, values, UR5E, None)
    assert names == list(UR5E) and absolute.positions == pytest.approx(np.arange(6.0)[::-1] * 0.1)
    assert absolute.velocities == () and absolute.time_from_start_s == 0.1
    delta = joint_spec(MODE_DELTA, names=UR5E[::-1])
    current = np.full(6, 1.0)  # in spec.names order
    _, moved = adapters.joint_trajectory(delta, values, UR5E, current)
    assert moved.positions == pytest.approx(1.0 + np.arange(6.0)[::-1] * 0.1)
    with pytest.raises(ValueError, match="current joint positions"):
        adapters.joint_trajectory(delta, values, UR5E, None)
    _, rates = adapters.joint_trajectory(joint_spec(MODE_VELOCITY), values, UR5E, None)
    assert rates.positions == () and rates.velocities == pytest.approx(np.arange(6.0) * 0.1)


# -- start-up refusals ------------------------------------------------------------------------------------
def ur5e_params(**changes) -> PolicyControllerParams:
    base = PolicyControllerParams(
        action_names=UR5E,
        action_units=("rad",) * 6,
        action_scale=(0.05,) * 6,
        action_lower=(-1.0,) * 6,
        action_upper=(1.0,) * 6,
        max_delta=(0.5,) * 6,
        hold_last=(False,) * 6,
        publish_trajectory=True,
        trajectory_controller=TrajectoryController(joints=UR5E),
        joint_state_feedback=True,
    )
    return dataclasses.replace(base, **changes)


def test_accepted_combinations_start():
    startup_check(ur5e_params())  # DELTA joint targets with joint feedback
    startup_check(ur5e_params(action_mode="absolute", joint_state_feedback=False))
    velocity_jtc = TrajectoryController(UR5E, False, True, True)
    startup_check(ur5e_params(action_mode="velocity", action_units=("rad/s",) * 6, trajectory_controller=velocity_jtc))
    startup_check(PolicyControllerParams(publish_twist=True, publish_pose=True, publish_array=True))  # Cartesian


@pytest.mark.parametrize(
    "params, expected",
    [
        (PolicyControllerParams(publish_trajectory=True), "dx, dy, dz are Cartesian axes, not joints"),
        (
            PolicyControllerParams(publish_trajectory=True, trajectory_controller=TrajectoryController(("dx", "dy"))),
            "dx, dy, dz are Cartesian axes",
        ),
        (ur5e_params(trajectory_controller=TrajectoryController()), "trajectory_controller.joints is empty"),
        (ur5e_params(trajectory_controller=TrajectoryController((*UR5E, UR5E[0]))), "more than once"),
        (ur5e_params(trajectory_controller=TrajectoryController(UR5E[:5])), "6 joints for a controller of 5"),
        (ur5e_params(trajectory_controller=TrajectoryController((*UR5E, "gripper"))), "6 joints for a controller of 7"),
        (ur5e_params(joint_state_feedback=False), "set joint_state_feedback: true"),
        (ur5e_params(action_mode="velocity", action_units=("rad/s",) * 6), "non-zero velocity"),
        (ur5e_params(action_units=("deg",) * 6), "shoulder_pan_joint in 'deg'"),
        (ur5e_params(publish_trajectory=False, publish_twist=True), "joint actions go to cmd_trajectory"),
        (ur5e_params(publish_trajectory=False, publish_pose=True), "are not Cartesian axes"),
        (PolicyControllerParams(publish_twist=True, action_mode="absolute"), "a twist cannot carry absolute"),
        (PolicyControllerParams(publish_pose=True, action_mode="velocity"), "a pose target cannot carry velocities"),
        (PolicyControllerParams(publish_twist=True, frame_id=""), "publish_twist: MoveIt Servo would refuse it"),
        (PolicyControllerParams(publish_pose=True, frame_id=""), "frame_id is empty"),
        (PolicyControllerParams(publish_twist=True, action_units=("mm", "m", "m", "1")), "dx in 'mm' (not 'm')"),
        (
            PolicyControllerParams(workspace=WorkspaceLimits(enabled=True, frame_id="base")),
            "workspace.frame_id 'base' is not the action's frame_id 'world'",
        ),
        (ur5e_params(workspace=WorkspaceLimits(enabled=True)), "workspace limits need Cartesian actions"),
    ],
)
def test_combinations_a_controller_cannot_execute_are_refused_in_one_line(params, expected):
    with pytest.raises(RoboscapeError) as err:
        startup_check(params)
    assert expected in str(err.value) and "\n" not in str(err.value)


# -- joint feedback -----------------------------------------------------------------------------------------
def test_joint_state_is_read_by_name_whatever_the_drivers_order():
    by_name = ByName(UR5E)
    shuffled = ("elbow_joint", "finger_joint", *UR5E[3:], "shoulder_lift_joint", "shoulder_pan_joint")
    positions = [3.0, 99.0, 4.0, 5.0, 6.0, 2.0, 1.0]
    assert by_name(shuffled, positions).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    with pytest.raises(StateRejected, match=r"missing \['wrist_3_joint'\]"):
        by_name(UR5E[:5], [0.0] * 5)
    with pytest.raises(StateRejected, match="6 positions for 7 names"):
        by_name(shuffled, [0.0] * 6)
    with pytest.raises(StateRejected, match="NaN"):
        by_name(UR5E, [0.0, np.nan, 0, 0, 0, 0])
    assert ByName(None)(("b", "a"), [2.0, 1.0]).tolist() == [2.0, 1.0]  # the message's own order


def test_feedback_is_used_only_while_fresh():
    latest = Fresh(0.5)
    assert latest.get(10.0) is None
    latest.set("pose", 10_000_000_000)
    assert latest.get(10.4) == "pose" and latest.get(10.6) is None


# -- workspace limits ----------------------------------------------------------------------------------------
CARTESIAN = ActionSpec(
    ("dx", "dy", "dz", "gripper"), ("m", "m", "m", "1"), (0.01,) * 3 + (1.0,), (-1.0,) * 4, (1.0,) * 4
)
BOX = WorkspaceLimits(enabled=True, frame_id="world", lower=(0.0, 0.0, 0.1), upper=(0.5, 0.5, 0.6))


def box_filter(on_exit, spec=CARTESIAN):
    """A filter with the box and its e-stop heard released."""
    safety = SafetyFilter(spec, (2.0,) * spec.dim, dataclasses.replace(BOX, on_exit=on_exit))
    safety.set_estop(False)
    return safety


def test_a_command_leaving_the_box_is_clipped_to_its_edge():
    safety = box_filter("clip")
    verdict = safety.check([1.0, -0.5, 0.5, 1.0], np.array([0.495, 0.2, 0.3]))  # x: 0.495 + 0.01 > 0.5
    assert verdict.ok and verdict.clipped and "x=0.505" in verdict.message
    assert verdict.command == pytest.approx([0.5, -0.5, 0.5, 1.0])  # x stops at the edge; the rest unchanged
    assert safety.previous == pytest.approx(verdict.command)
    inside = safety.check([0.2, 0.2, 0.2, 1.0], np.array([0.2, 0.2, 0.3]))
    assert inside.ok and not inside.clipped and inside.command == pytest.approx([0.2, 0.2, 0.2, 1.0])


def test_a_command_leaving_the_box_is_refused_with_a_hold():
    safety = box_filter("refuse")
    safety.check([0.1, 0.0, 0.0, 1.0], np.array([0.2, 0.2, 0.3]))
    verdict = safety.check([0.0, 0.0, -1.0, 1.0], np.array([0.2, 0.2, 0.105]))  # z would be 0.095 < 0.1
    assert not verdict.ok and verdict.hold and verdict.reason == "workspace" and "z=0.095" in verdict.message
    assert safety.previous == pytest.approx([0.1, 0.0, 0.0, 1.0])  # a refused command is not remembered


def test_without_a_fresh_pose_the_arm_holds():
    verdict = box_filter("clip").check([0.1, 0.0, 0.0, 1.0], None)
    assert not verdict.ok and verdict.hold and verdict.reason == "no-ee-pose"


def test_outside_the_box_only_motion_back_toward_it_is_allowed():
    safety = box_filter("refuse")
    outside = np.array([0.7, 0.2, 0.3])  # x beyond 0.5 (the arm started there)
    assert not safety.check([0.5, 0.0, 0.0, 0.0], outside).ok
    assert safety.check([-0.5, 0.0, 0.0, 0.0], outside).ok


def test_absolute_targets_are_clipped_too():
    spec = ActionSpec(("x", "y", "z"), ("m",) * 3, (1.0,) * 3, (-1.0,) * 3, (1.0,) * 3, MODE_ABSOLUTE)
    safety = box_filter("clip", spec)
    assert safety.check([0.9, 0.3, 0.0], np.array([0.2, 0.2, 0.3])).command == pytest.approx([0.5, 0.3, 0.1])


def test_velocity_commands_are_judged_over_one_period():
    spec = ActionSpec(("vx", "vy", "vz"), ("m/s",) * 3, (0.1,) * 3, (-1.0,) * 3, (1.0,) * 3, MODE_VELOCITY, 0.1)
    safety = box_filter("clip", spec)
    # 1.0 * 0.1 m/s for 0.1 s = 1 cm; 5 mm of room left along x: half the speed
    assert safety.check([1.0, 0.0, 0.0], np.array([0.495, 0.2, 0.3])).command == pytest.approx([0.5, 0.0, 0.0])


def test_bad_workspace_settings_are_refused():
    with pytest.raises(SafetyConfigError, match="below workspace.upper"):
        SafetyFilter(CARTESIAN, (2.0,) * 4, dataclasses.replace(BOX, lower=(0.0, 0.0, 0.7)))
    with pytest.raises(SafetyConfigError, match="three finite numbers"):
        SafetyFilter(CARTESIAN, (2.0,) * 4, dataclasses.replace(BOX, upper=(0.5, 0.5)))
