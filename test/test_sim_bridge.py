"""sim_bridge as a real process: one step per valid Action, simulated /clock, reset service, and
every bad Action refused with a throttled warning while the arm stays put and the node runs on."""

import math

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

msg = pytest.importorskip("roboscape_r_ros.msg")
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Bool, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from helpers.ros_harness import action, startup_error  # noqa: E402
from roboscape_r_ros.nodes.messaging import time_ns  # noqa: E402

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
PERIOD_NS = 12_500_000


class Sim:
    """Harness side of sim_bridge: an action publisher and collectors of everything it publishes."""

    def __init__(self, ros) -> None:
        self.ros = ros
        self.pub = ros.node.create_publisher(msg.Action, "action", RELIABLE)
        self.images, self.states, self.success, self.clock, self.episodes = [], [], [], [], []
        ros.node.create_subscription(Image, "image_raw", self.images.append, qos_profile_sensor_data)
        ros.node.create_subscription(JointState, "state", self.states.append, RELIABLE)
        ros.node.create_subscription(Bool, "success", self.success.append, RELIABLE)
        ros.node.create_subscription(Clock, "/clock", self.clock.append, RELIABLE)
        ros.node.create_subscription(String, "episode", self.episodes.append, LATCHED)
        self.reset_client = ros.node.create_client(Trigger, "reset")

    def wait_ready(self) -> None:
        assert self.ros.spin_until(
            lambda: self.images and self.states and self.episodes and self.pub.get_subscription_count(), 60
        ), "sim_bridge did not come up"

    def step(self, values, **fields) -> None:
        seen, stamp = len(self.success), self.latest_stamp()
        self.pub.publish(action(values, **fields))
        assert self.ros.spin_until(
            lambda: (
                len(self.success) > seen
                and self.latest_stamp() == time_ns(self.states[-1].header.stamp) == stamp + PERIOD_NS
            ),
            10,
        ), "no step"

    def latest_stamp(self) -> int:
        return time_ns(self.images[-1].header.stamp) if self.images else -1


def test_one_step_per_action_with_simulated_time_and_a_reset_service(ros):
    ros.start(
        "roboscape_r_ros.nodes.sim_bridge",
        "--params-file",
        "config/sim_bridge.yaml",
        "-p",
        "camera_resolution:=64",
        "-p",
        "republish_period_s:=0.2",
    )
    sim = Sim(ros)
    sim.wait_ready()
    first = sim.images[-1]
    assert (first.encoding, first.width, first.height, first.step) == ("rgb8", 64, 64, 192)
    pixels = np.frombuffer(first.data, np.uint8)
    assert pixels.std() > 0, "black frame"
    state = sim.states[-1]
    assert len(state.name) == 39 and state.name[:3] == ["hand_x", "hand_y", "hand_z"] and state.name[-1] == "goal_z"
    assert time_ns(state.header.stamp) == time_ns(first.header.stamp) == PERIOD_NS  # the reset took one control period
    hand = np.array(state.position[:3])
    # Idle: the same frame again (same stamp), no step, time stands still.
    ros.spin_until(lambda: False, 0.6)
    assert len(sim.success) == 0 and sim.latest_stamp() == PERIOD_NS and len(sim.images) >= 2
    # +x for 5 steps: the mocap target moves 1 cm per step in +x (the hand follows with some lag);
    # time advances 12.5 ms per step.
    for _ in range(5):
        sim.step([1.0, 0.0, 0.0, -1.0], episode_id=sim.episodes[-1].data)
    moved = np.array(sim.states[-1].position[:3]) - hand
    assert 0.01 < moved[0] < 0.05 and abs(moved[1]) < moved[0] / 3 and abs(moved[2]) < moved[0] / 3, moved
    assert sim.latest_stamp() == 6 * PERIOD_NS
    # /clock is another topic: it may trail
    assert ros.spin_until(lambda: time_ns(sim.clock[-1].clock) == 6 * PERIOD_NS, 5)
    assert [s.data for s in sim.success] == [False] * 5
    # An Action answering a frame already stepped from (a policy's repeat) is dropped silently.
    stale = action([1.0, 0.0, 0.0, -1.0])
    stale.header.stamp.nanosec = 3 * PERIOD_NS
    sim.pub.publish(stale)
    ros.spin_until(lambda: False, 0.5)
    assert len(sim.success) == 5 and sim.latest_stamp() == 6 * PERIOD_NS
    # reset: a new episode id on the latched topic, time keeps going forward.
    assert sim.reset_client.wait_for_service(timeout_sec=10)
    future = sim.reset_client.call_async(Trigger.Request())
    assert ros.spin_until(future.done, 20)
    assert future.result().success and future.result().message.endswith("ep0001")
    assert ros.spin_until(lambda: sim.episodes[-1].data.endswith("ep0001") and sim.latest_stamp() == 7 * PERIOD_NS, 10)


def test_bad_actions_are_refused_with_throttled_warnings_and_the_arm_does_not_move(ros):
    proc = ros.start("roboscape_r_ros.nodes.sim_bridge", "-p", "camera_resolution:=32", "-p", "warning_period_s:=60.0")
    sim = Sim(ros)
    sim.wait_ready()
    before = (sim.latest_stamp(), list(sim.states[-1].position))
    bad = [
        action([math.nan, 0.0, 0.0, 0.0]),
        action([0.0, math.inf, 0.0, 0.0]),
        action([0.0, 0.0, 0.0]),  # wrong dimension
        action([0.0, 0.0, 0.0, 0.0], names=["x", "y", "z", "gripper"]),
        action([0.0, 0.0, 0.0, 0.0], mode=msg.Action.MODE_ABSOLUTE),
        action([2.0, 0.0, 0.0, 0.0]),  # out of range
        action([0.0, 0.0, 0.0, 0.0], scale=[1.0, 1.0, 1.0, 1.0]),
        action([0.0, 0.0, 0.0, 0.0], episode_id="someone-elses-episode"),
    ]
    for _ in range(5):
        for a in bad:
            sim.pub.publish(a)
        ros.spin_until(lambda: False, 0.05)
    ros.spin_until(lambda: False, 1.0)
    assert proc.poll() is None, "sim_bridge died on bad input"
    assert len(sim.success) == 0 and sim.latest_stamp() == before[0] and list(sim.states[-1].position) == before[1]
    sim.step([0.0, 0.0, 0.5, 0.0])  # a good action (no episode id) still steps
    log = ros.stop(proc)
    warnings = [line for line in log.splitlines() if "refused an action" in line]
    assert len(warnings) == 7, log  # one per kind: nonfinite (NaN and inf), length, names, mode, range, scale, episode
    for expected in (
        "not all finite",
        "lengths differ",
        "names",
        "mode absolute",
        "out of range: dx=2",
        "scale",
        "someone-elses-episode",
    ):
        assert any(expected in w for w in warnings), expected
    assert all("the arm does not move" in w for w in warnings)
    assert "Traceback" not in log


def set_parameter(ros, name: str, value: str):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client = ros.node.create_client(SetParameters, "sim_bridge/set_parameters")
    assert client.wait_for_service(timeout_sec=20)
    value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=value)]))
    assert ros.spin_until(future.done, 20)
    return future.result().results[0]


def frame(image) -> np.ndarray:
    return np.frombuffer(image.data, np.uint8).astype(np.int16)


def test_the_scene_parameter_changes_the_scene_mid_episode_and_refuses_bad_values_in_one_line(ros):
    proc = ros.start("roboscape_r_ros.nodes.sim_bridge", "-p", "camera_resolution:=32")
    sim = Sim(ros)
    sim.wait_ready()
    for _ in range(3):
        sim.step([0.0, 0.0, 0.0, 0.0])
    before = frame(sim.images[-1])
    result = set_parameter(ros, "scene", "{table_rgba: [0.1, 0.4, 0.9, 1]}")
    assert result.successful, result.reason
    sim.step([0.0, 0.0, 0.0, 0.0])  # the arm stands still: only the table changes
    assert np.abs(frame(sim.images[-1]) - before).mean() > 4.0
    assert sim.episodes[-1].data.endswith("ep0000") and time_ns(sim.states[-1].header.stamp) == 5 * PERIOD_NS
    changed = frame(sim.images[-1])
    for bad, expected in (
        ("{table_rgba: [2, 0, 0, 1]}", "table_rgba must be 4 numbers in [0, 1]"),
        ("{tabel_rgba: [0, 0, 0, 1]}", "unknown option 'scene.tabel_rgba'"),
        ("blue", "scene must be a mapping"),
    ):
        result = set_parameter(ros, "scene", bad)
        assert not result.successful and expected in result.reason and "\n" not in result.reason, result.reason
    sim.step([0.0, 0.0, 0.0, 0.0])
    assert np.abs(frame(sim.images[-1]) - changed).mean() < 1.0  # the refused values left the scene alone
    assert set_parameter(ros, "scene", "").successful
    result = set_parameter(ros, "task", "push-v3")  # every parameter but scene is read at start only
    assert not result.successful and "read-only" in result.reason, result.reason
    sim.step([0.0, 0.0, 0.0, 0.0])
    assert np.abs(frame(sim.images[-1]) - before).mean() < 1.0  # the training scene again
    log = ros.stop(proc)
    assert "scene changed after step 3 of episode reach-v3-seed0-ep0000" in log, log
    assert log.count("refused") == 3 and "Traceback" not in log, log


@pytest.mark.parametrize(
    "param, expected",
    [
        ("task:=reach-v9", "unknown task 'reach-v9'"),
        ("camera:=ceiling", "unknown camera 'ceiling'"),
        ("scene:=blue", "scene must be a mapping of scene fields"),
        ('scene:="{light_scale: -1}"', "light_scale must be a finite number >= 0"),
    ],
)
def test_bad_startup_parameters_are_refused_with_their_reason(ros, param, expected):
    """sim_bridge's own checks (tasks, cameras, scenes), in this process; the node's
    process ending with one such line: test_node_parameters."""
    from roboscape_r_ros.nodes.sim_bridge import SimBridge

    assert expected in startup_error(ros, SimBridge, param)


def twist(stamp, linear=(0.0, 0.0, 0.0), frame_id="world"):
    from geometry_msgs.msg import TwistStamped

    command = TwistStamped()
    command.header.stamp, command.header.frame_id = stamp, frame_id
    command.twist.linear.x, command.twist.linear.y, command.twist.linear.z = map(float, linear)
    return command


def test_servo_mode_steps_at_a_fixed_rate_holds_a_twist_until_its_timeout_and_publishes_joint_states(ros):
    from geometry_msgs.msg import TwistStamped

    proc = ros.start(
        "roboscape_r_ros.nodes.sim_bridge",
        "-p",
        "camera_resolution:=32",
        "-p",
        "command_interface:=servo",
        "-p",
        "max_steps:=1000",
    )
    sim = Sim(ros)
    joints = []
    ros.node.create_subscription(JointState, "joint_states", joints.append, RELIABLE)
    pub = ros.node.create_publisher(TwistStamped, "cmd_twist", RELIABLE)
    assert ros.spin_until(lambda: sim.states and joints and pub.get_subscription_count(), 60), "no sim_bridge"
    names = list(joints[-1].name)
    assert names == [f"right_j{i}" for i in range(7)] + ["r_close", "l_close"], names
    start, start_joints = np.array(sim.states[-1].position[:3]), np.array(joints[-1].position)
    ros.spin_until(lambda: False, 0.5)
    assert not sim.success and sim.latest_stamp() == PERIOD_NS  # the episode's clock waits for a first twist
    pub.publish(twist(sim.images[-1].header.stamp, linear=(0.0, 0.0, 0.5), frame_id="panda_link0"))  # refused
    ros.spin_until(lambda: False, 0.5)
    assert not sim.success
    # 0.4 m/s in +x, held for servo.command_timeout_s (0.1 s: 8 steps of 5 mm) and then dropped.
    pub.publish(twist(sim.images[-1].header.stamp, linear=(0.4, 0.0, 0.0)))
    assert ros.spin_until(lambda: sim.latest_stamp() >= 60 * PERIOD_NS, 20), "the sim does not step on its own"
    stopped = np.array(sim.states[-1].position[:3])
    moved = stopped - start
    assert 0.03 < moved[0] < 0.045 and np.abs(moved[1:]).max() < 0.005, moved
    # Time runs on (fixed rate), the hand stays where the timeout left it.
    now = sim.latest_stamp()
    assert ros.spin_until(lambda: sim.latest_stamp() >= now + 20 * PERIOD_NS, 20)
    assert np.abs(np.array(sim.states[-1].position[:3]) - stopped).max() < 1e-3  # the weld settles: < 1 mm
    # Joint positions come from MuJoCo, stamped like the state: the arm's joints turned, the fingers did not.
    last = joints[-1]
    assert time_ns(last.header.stamp) in {time_ns(s.header.stamp) for s in sim.states}
    turned = np.abs(np.array(last.position) - start_joints)
    assert turned[:7].max() > 0.01 and turned[7:].max() < 1e-3, turned
    log = ros.stop(proc)
    assert "TwistStamped on /cmd_twist in 'world'" in log, log
    assert "refused a twist: twist in frame 'panda_link0', not the sim's 'world'" in log, log
    assert "no twist fresher than 0.1 s at step 8: holding" in log, log
    assert "Traceback" not in log, log
