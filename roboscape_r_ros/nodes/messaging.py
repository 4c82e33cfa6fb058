"""What the nodes' topics and services share: QoS profiles, stamps, rgb8 images, the e-stop (latched
and volatile publishers alike) and asking a Trigger service."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Header
from std_srvs.srv import Trigger

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


# Latched: a late subscriber still gets the last value (episode id, goal image, instruction).
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


# Reliable with a deep queue: inputs none of which may be lost while the node is busy (recorded
# actions, rewards for learning, the dreamer's outcomes to pair with frames).
RELIABLE_BACKLOG = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def publish_estop_released(node: Node, topic: str = "estop"):
    """A latched "not engaged" on the e-stop topic, once: the e-stop of a simulated arm (sim_bridge,
    the dreamer in imagination) or of a test. policy_controller sends nothing until it has heard a
    value on estop, so a graph without a real e-stop needs this one. Returns the publisher."""
    publisher = node.create_publisher(Bool, topic, LATCHED)
    publisher.publish(Bool(data=False))
    return publisher


def time_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def stamp_ns(header: Header) -> int:
    return time_ns(header.stamp)


def stamp(time_ns: int) -> Time:
    return Time(sec=time_ns // 1_000_000_000, nanosec=time_ns % 1_000_000_000)


def rgb8_image(frame: np.ndarray, header: Header) -> Image:
    """uint8 [H, W, 3] RGB -> sensor_msgs/Image (rgb8), keeping the source header."""
    height, width = frame.shape[:2]
    return Image(
        header=header, height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3, data=frame.tobytes()
    )


def ask_trigger(node: Node, client, purpose: str, what: str) -> None:
    """Call a std_srvs/Trigger service without waiting for it; its answer is logged when it comes."""
    name = node.resolve_service_name(client.srv_name)
    if not client.service_is_ready():
        node.get_logger().warning(f"{purpose}: {name} is not available: waiting for {what}")
        return

    def answered(future) -> None:
        reply = future.result()
        if reply is None or not reply.success:
            why = reply.message if reply is not None else "no reply"
            node.get_logger().warning(f"{purpose}: {name} refused {what}: {why}")
        else:
            node.get_logger().info(f"{purpose}: asked {name} for {what}: {reply.message}")

    client.call_async(Trigger.Request()).add_done_callback(answered)


def _ignore(_event) -> None:
    """Volatile e-stop publishers do not match the latched reader: expected, not worth a warning."""


def subscribe_estop(node: Node, callback: Callable[[Bool], None]) -> str:
    """Read ``estop`` (std_msgs/Bool) from volatile and latched publishers alike; the topic's full name.

    A volatile reader gets no history, so a node (re)started while the e-stop is engaged would move. A
    second, latched reader gets the last value of latched e-stop publishers (it cannot match volatile
    ones, which the first reader serves; repeats change nothing)."""
    topic = node.create_subscription(Bool, "estop", callback, RELIABLE).topic_name
    node.create_subscription(
        Bool, "estop", callback, LATCHED, event_callbacks=SubscriptionEventCallbacks(incompatible_qos=_ignore)
    )
    return topic
