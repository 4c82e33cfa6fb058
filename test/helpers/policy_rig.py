"""The harness as camera, arm and operator of one policy_controller process, and the camera's frames."""

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from helpers.ros_harness import LATCHED, RELIABLE_50, image
from roboscape_r_ros.msg import Action
from roboscape_r_ros.nodes.messaging import time_ns


def camera_image(stamp: Time, size: int = 64, encoding: str = "rgb8") -> Image:
    """The camera's frame (the same seeded random size x size RGB each time) stamped ``stamp``."""
    rgb = np.random.default_rng(0).integers(0, 255, (size, size, 3), np.uint8)
    return image(rgb, time_ns(stamp), encoding, frame_id="camera")


class Rig:
    """The harness as camera, arm and operator of one policy_controller; ``estop_released``: the
    latched "not engaged" e-stop of a sim graph, else the e-stop's state is left to the test."""

    def __init__(self, ros, estop_released: bool = True) -> None:
        self.ros = ros
        node = ros.node
        if estop_released:
            ros.release_estop()
        self.obs_pub = node.create_publisher(Image, "observation", qos_profile_sensor_data)
        self.goal_pub = node.create_publisher(Image, "goal_image", LATCHED)
        self.state_pub = node.create_publisher(JointState, "state", RELIABLE_50)
        self.pose_pub = node.create_publisher(PoseStamped, "ee_pose", RELIABLE_50)
        self.estop_pub = node.create_publisher(Bool, "estop", RELIABLE_50)
        self.episode_pub = node.create_publisher(String, "episode", LATCHED)
        self.actions, self.out = [], {}
        node.create_subscription(Action, "action", self.actions.append, RELIABLE_50)
        for kind, topic in (
            (PoseStamped, "cmd_pose"),
            (TwistStamped, "cmd_twist"),
            (Float64MultiArray, "cmd_array"),
            (JointTrajectory, "cmd_trajectory"),
        ):
            self.out[topic] = []
            node.create_subscription(kind, topic, self.out[topic].append, RELIABLE_50)

    def now(self):
        return self.ros.node.get_clock().now().to_msg()

    def answer(self, obs: Image, timeout_s=15.0):
        """Publish obs (again each tick: best effort may drop; one stamp is answered once) until answered."""
        answers = lambda: [a for a in self.actions if a.header.stamp == obs.header.stamp]  # noqa: E731
        assert self.ros.spin_until(lambda: answers(), timeout_s, tick=lambda: self.obs_pub.publish(obs)), "no action"
        return answers()[0]

    def warm_up(self, timeout_s=30.0):
        """Freshly stamped frames until the first action: discovery done, node up."""
        assert self.ros.spin_until(
            lambda: len(self.actions) > 0, timeout_s, tick=lambda: self.obs_pub.publish(camera_image(self.now()))
        ), "no action"

    def quiet(self, seconds: float, tick=None) -> int:
        """Spin for a while; how many actions arrived meanwhile."""
        seen = len(self.actions)
        self.ros.spin_until(lambda: False, seconds, tick=tick)
        return len(self.actions) - seen
