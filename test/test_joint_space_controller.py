"""policy_controller as a real process driving a joint_trajectory_controller (the harness plays
camera, /joint_states and controller): joint order taken from names at each of the three places
it can differ (the policy, the JointState, the controller), and a start-up refusal that publishes
nothing."""

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

msg = pytest.importorskip("roboscape_r_ros.msg")
from sensor_msgs.msg import Image, JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
CONTROLLER = "roboscape_r_ros.nodes.policy_controller"
EXAMPLE = "config/examples/ur5e_ros2_control.yaml"
UR5E = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint", "wrist_3_joint"]
HERE = dict(zip(UR5E, [0.1, -1.2, 1.5, -0.3, 1.57, 0.0]))  # the arm's joint positions, by name
POLICY_ORDER = [
    "wrist_3_joint",
    "elbow_joint",
    "shoulder_pan_joint",
    "wrist_1_joint",
    "shoulder_lift_joint",
    "wrist_2_joint",
]
DRIVER_ORDER = [
    "elbow_joint",
    "shoulder_lift_joint",
    "shoulder_pan_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
]
SCALE = 0.002  # rad per unit (the example's action_scale)


def image(stamp) -> Image:
    m = Image(height=8, width=8, encoding="rgb8", step=24, data=bytes(8 * 8 * 3))
    m.header.stamp = stamp
    return m


def joint_state(stamp) -> JointState:
    m = JointState(name=DRIVER_ORDER, position=[HERE[name] for name in DRIVER_ORDER])  # as joint_state_broadcaster
    m.header.stamp = stamp
    return m


def test_joint_commands_go_out_in_the_controllers_order_with_values_and_feedback_by_name(ros):
    proc = ros.start(
        CONTROLLER, "--params-file", EXAMPLE, "-p", f"action_names:={POLICY_ORDER}", "-p", "stale_after_s:=2.0"
    )
    node = ros.node
    ros.release_estop()
    obs_pub = node.create_publisher(Image, "observation", qos_profile_sensor_data)
    state_pub = node.create_publisher(JointState, "state", RELIABLE)
    actions, trajectories = [], []
    node.create_subscription(msg.Action, "action", actions.append, RELIABLE)
    node.create_subscription(JointTrajectory, "cmd_trajectory", trajectories.append, RELIABLE)

    def stream():  # a camera and the arm's joint_state_broadcaster
        now = node.get_clock().now().to_msg()
        state_pub.publish(joint_state(now))
        obs_pub.publish(image(now))

    def answered(action) -> bool:  # a point = the arm's position + the action, joint by joint (Action: policy order)
        expected = [HERE[joint] + SCALE * action.values[POLICY_ORDER.index(joint)] for joint in UR5E]
        return any(np.allclose(t.points[0].positions, expected, atol=1e-9) for t in trajectories)

    assert ros.spin_until(lambda: len(trajectories) >= 3, 30, tick=stream), "no cmd_trajectory"
    # the last Action's trajectory may still be in flight on its own topic: let it land (no new frames)
    ros.spin_until(lambda: all(answered(a) for a in actions), 1.0)
    log = ros.stop(proc)
    assert actions and actions[0].names == POLICY_ORDER and actions[0].units == ["rad"] * 6, log
    by_stamp = {(a.header.stamp.sec, a.header.stamp.nanosec): a for a in actions}
    for trajectory in trajectories:
        assert trajectory.joint_names == UR5E and trajectory.header.stamp.sec == 0  # controller order, start now
        (point,) = trajectory.points
        assert len(point.positions) == 6 and not point.velocities and point.time_from_start.nanosec == 50_000_000
    checked = sum(answered(action) for action in actions)
    assert checked == len(by_stamp) and checked >= 3, log
    assert "adapters: cmd_trajectory" in log and "Traceback" not in log


def test_a_combination_the_controller_rejects_is_one_line_and_publishes_nothing(ros):
    seen = []
    ros.node.create_subscription(JointTrajectory, "cmd_trajectory", seen.append, RELIABLE)
    ros.node.create_subscription(msg.Action, "action", seen.append, RELIABLE)
    obs_pub = ros.node.create_publisher(Image, "observation", qos_profile_sensor_data)
    proc = ros.start(CONTROLLER, "--params-file", EXAMPLE, "-p", "joint_state_feedback:=false")
    ros.spin_until(
        lambda: proc.poll() is not None, 60, tick=lambda: obs_pub.publish(image(ros.node.get_clock().now().to_msg()))
    )
    out = ros.stop(proc)
    assert proc.returncode == 2, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and "publish_trajectory: DELTA joint targets" in lines[0] and "Traceback" not in out, out
    assert seen == [] and ros.node.count_publishers("cmd_trajectory") == 0
