"""Issue 25, must-show: a deployment written like config/examples/panda_moveit_servo.yaml (twist output,
workspace box, e-stop) drives real MuJoCo physics through sim_bridge's MoveIt Servo mode.

Two real processes on a private domain, started from config/examples/sawyer_sim_servo.yaml as its
header says: sim_bridge (command_interface servo: TwistStamped on cmd_twist, fixed-rate stepping,
command timeout) and policy_controller (expert backend, publish_twist, workspace limits, use_sim_time).
The expert reaches Meta-World's success on reach-v3 episode after episode; a box short of the goal
stops the hand at its face; the e-stop stops it where it is until released.
"""

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

pytest.importorskip("roboscape_r_ros.msg")
from geometry_msgs.msg import PoseStamped, TwistStamped  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from helpers.ros_harness import Output  # noqa: E402
from roboscape_r_ros.nodes.messaging import time_ns  # noqa: E402

RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
EXAMPLE = "config/examples/sawyer_sim_servo.yaml"
ENDED = r"episode (\S+) ended after (\d+) steps: (\w+)"
PERIOD_NS = 12_500_000


def servo_loop(ros, *controller_params: str, max_steps: int = 200) -> tuple[Output, Output]:
    sim = Output(
        ros.start(
            "roboscape_r_ros.nodes.sim_bridge",
            "--params-file",
            EXAMPLE,
            "-p",
            "camera_resolution:=32",
            "-p",
            f"max_steps:={max_steps}",
        )
    )
    params = [arg for p in controller_params for arg in ("-p", p)]
    controller = Output(
        ros.start(
            "roboscape_r_ros.nodes.policy_controller",
            "--params-file",
            EXAMPLE,
            "-r",
            "observation:=image_raw",
            "-p",
            "use_sim_time:=true",
            *params,
        )
    )
    return sim, controller


def episodes(ros, sim: Output, count: int, timeout_s: float) -> list[tuple[str, int, str]]:
    assert ros.spin_until(lambda: len(sim.find_all(ENDED)) >= count, timeout_s), sim.text()
    return [(m.group(1), int(m.group(2)), m.group(3)) for m in sim.find_all(ENDED)[:count]]


def test_the_expert_drives_the_servo_arm_to_success_on_reach(ros):
    sim, controller = servo_loop(ros)
    ended = episodes(ros, sim, 10, 300)
    successes = sum(outcome == "success" for _, _, outcome in ended)
    print(f"reach-v3 through the Servo-style sim: {successes}/10 successes, steps {[s for _, s, _ in ended]}")
    assert [e for e, _, _ in ended] == [f"reach-v3-seed0-ep{k:04d}" for k in range(10)]
    assert successes >= 8, ended
    assert "adapters: cmd_twist" in controller.text() and "clipped" not in controller.text()
    # Every twist met Servo's contract (the controller itself may hold under load: its safety rules).
    assert "refused a twist" not in sim.text(), sim.text()
    for out in (sim, controller):
        assert "Traceback" not in out.text(), out.text()


def test_the_workspace_box_stops_the_servo_arm_at_its_face(ros):
    # The box ends at y = 0.7 m; reach-v3's goals lie at y >= 0.8 m, the hand starts at y = 0.6 m.
    sim, controller = servo_loop(ros, "workspace.upper:=[0.3, 0.7, 0.4]", max_steps=120)
    poses = []
    ros.node.create_subscription(PoseStamped, "ee_pose", poses.append, RELIABLE)
    ended = episodes(ros, sim, 2, 120)
    assert all(outcome == "truncated" for _, _, outcome in ended), ended
    y = np.array([p.pose.position.y for p in poses])
    print(f"workspace box at y = 0.7 m: the hand's largest y {y.max():.4f} m over {len(y)} poses")
    assert y.max() <= 0.7 + 0.002, y.max()  # never past the box (the mocap weld may lag a hair)
    assert y.max() > 0.69, y.max()  # the hand went to the box's face: the box stopped it, not something else
    assert "clipped to the workspace box" in controller.text(), controller.text()


def position(pose: PoseStamped) -> np.ndarray:
    return np.array([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z])


def test_the_estop_stops_the_servo_arm_until_released(ros):
    sim, controller = servo_loop(ros, max_steps=400)
    poses, twists = [], []
    ros.node.create_subscription(PoseStamped, "ee_pose", poses.append, RELIABLE)
    ros.node.create_subscription(TwistStamped, "cmd_twist", twists.append, RELIABLE)
    estop = ros.node.create_publisher(Bool, "estop", LATCHED)

    def moving() -> bool:
        return bool(twists) and len(poses) > 1 and np.abs(position(poses[-1]) - position(poses[-2])).max() > 1e-3

    assert ros.spin_until(moving, 120), sim.text() + controller.text()
    estop.publish(Bool(data=True))
    controller.wait(ros, r"E-STOP engaged", 10)
    ros.spin_until(lambda: False, 0.5)  # twists in flight and the hold land, the mocap weld settles
    sent, held, stamp = len(twists), position(poses[-1]), time_ns(poses[-1].header.stamp)
    linear = twists[-1].twist.linear
    assert (linear.x, linear.y, linear.z) == (0.0, 0.0, 0.0)  # the hold: zero motion
    assert ros.spin_until(lambda: time_ns(poses[-1].header.stamp) >= stamp + 80 * PERIOD_NS, 30), "the sim stopped"
    assert np.abs(position(poses[-1]) - held).max() < 1e-3  # a second of simulated time without motion
    assert len(twists) == sent  # nothing sent while engaged
    done = len(sim.find_all(ENDED))
    estop.publish(Bool(data=False))
    controller.wait(ros, r"e-stop released", 10)
    assert ros.spin_until(lambda: len(sim.find_all(ENDED)) > done, 60), sim.text()
    assert sim.find_all(ENDED)[done].group(3) == "success", sim.text()
