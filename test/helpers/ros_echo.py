"""Test-only relay: republishes every Action on action_echo and every Reward on reward_echo."""

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from roboscape_r_ros.msg import Action, Reward
from roboscape_r_ros.nodes.node_tools import spin


class Echo(Node):
    def __init__(self) -> None:
        super().__init__("echo")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for msg_type, topic in ((Action, "action"), (Reward, "reward")):
            pub = self.create_publisher(msg_type, f"{topic}_echo", qos)
            self.create_subscription(msg_type, topic, pub.publish, qos)


if __name__ == "__main__":
    raise SystemExit(spin(Echo))
