"""The worked examples in config/examples/ pass policy_controller's start-up validation, and a copy
of each with one mistake a lab makes is refused (no ROS: runtime/gates/adapter_config.startup_check)."""

import re
from pathlib import Path

import pytest
import yaml

from roboscape_r_ros.config import field_specs
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.parameters import build
from roboscape_r_ros.runtime.gates.adapter_config import startup_check
from roboscape_r_ros.runtime.gates.controller import PolicyControllerParams

EXAMPLES = Path(__file__).resolve().parents[1] / "config" / "examples"


def example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())["/**/policy_controller"]["ros__parameters"]


def params(values: dict) -> PolicyControllerParams:
    """The parameters a node started with this file has: its values over the declared defaults."""
    specs = field_specs(PolicyControllerParams)
    assert set(values) <= {s.name for s in specs}, set(values) - {s.name for s in specs}
    return build(PolicyControllerParams, {**{s.name: s.default for s in specs}, **values})


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == [
        "gazebo_ur5e_gz_ros2_control.yaml",
        "panda_moveit_servo.yaml",
        "sawyer_sim_servo.yaml",
        "ur5e_ros2_control.yaml",
    ]


@pytest.mark.parametrize(
    "name, mistake, expected",
    [
        (
            "ur5e_ros2_control.yaml",
            {"joint_state_feedback": False},
            "publish_trajectory: DELTA joint targets are the current joint positions + the action",
        ),
        ("panda_moveit_servo.yaml", {"action_units": ["cm", "cm", "cm", "1"]}, "publish_twist: units dx in 'cm'"),
        (  # the sim's Servo mode (test/test_servo_loop.py): a twist cannot say "go to"
            "sawyer_sim_servo.yaml",
            {"action_mode": "absolute"},
            "publish_twist: a twist cannot carry absolute targets",
        ),
        (  # Gazebo (docs/gazebo.md): a joint left out of the controller's list
            "gazebo_ur5e_gz_ros2_control.yaml",
            {"trajectory_controller.joints": ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint"]},
            "joint_trajectory_controller would refuse it: 6 joints for a controller of 3",
        ),
    ],
)
def test_each_example_starts_and_a_mistaken_copy_is_refused(name, mistake, expected):
    values = example(name)
    spec, safety = startup_check(params(values))
    assert spec.dim == len(values["action_names"])
    with pytest.raises(RoboscapeError, match=re.escape(expected)):
        startup_check(params({**values, **mistake}))


def test_the_ur5e_example_sends_the_controllers_joints_and_the_panda_example_keeps_the_hand_in_its_box():
    ur5e = params(example("ur5e_ros2_control.yaml"))
    assert ur5e.trajectory_controller.joints[0] == "shoulder_pan_joint" and ur5e.publish_trajectory
    panda = params(example("panda_moveit_servo.yaml"))
    _, safety = startup_check(panda)
    assert safety.workspace is not None and panda.workspace.frame_id == panda.frame_id == "panda_link0"
