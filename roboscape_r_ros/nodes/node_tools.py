"""What every roboscape_r_ros node shares: QoS profiles, stamps, described parameters, throttled
logs and drops, rgb8 images, a clean spin."""

from __future__ import annotations

import gc
import signal
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from roboscape_r_ros.data.frames import FrameError, decode_buffer

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Latched: a late subscriber still gets the last value (episode id, goal image, instruction).
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Reliable with a deep queue: inputs none of which may be lost while the node is busy (recorded
# actions, rewards for learning, the dreamer's outcomes to pair with frames).
RELIABLE_BACKLOG = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def stamp_ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def stamp(time_ns: int) -> Time:
    return Time(sec=time_ns // 1_000_000_000, nanosec=time_ns % 1_000_000_000)


def rgb8_image(frame: np.ndarray, header: Header) -> Image:
    """uint8 [H, W, 3] RGB -> sensor_msgs/Image (rgb8), keeping the source header."""
    height, width = frame.shape[:2]
    return Image(
        header=header, height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3, data=frame.tobytes()
    )


def declare(
    node: Node, name: str, default: object, description: str, *, low: float | None = None, high: float | None = None
) -> object:
    """Declare a typed, described parameter (with a range when given) and return its value."""
    descriptor = ParameterDescriptor(description=description)
    if low is not None and high is not None:
        if isinstance(default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
        else:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)
            ]
    return node.declare_parameter(name, default, descriptor).value


class ThrottledWarnings:
    """At most one warning per key per period; each warning says how many were suppressed."""

    def __init__(self, node: Node, period_s: float) -> None:
        self._logger = node.get_logger()
        self._period_s = period_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -float("inf")) < self._period_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        suppressed = self._suppressed.pop(key, 0)
        suffix = f" ({suppressed} more like this since the last warning)" if suppressed else ""
        self._last[key] = now
        self._logger.warning(message + suffix)


class Drops:
    """Dropped inputs of a node: counted, one throttled warning per kind saying what the drop costs."""

    def __init__(self, warnings: ThrottledWarnings, cost: str) -> None:
        self.warnings, self.cost, self.count = warnings, cost, 0

    def __call__(self, reason: str, message: str) -> None:
        self.count += 1
        self.warnings.warn(reason, f"dropped {message}; {self.cost} [{self.count} dropped in all]")

    def decode(self, msg: Image, what: str) -> np.ndarray | None:
        """sensor_msgs/Image -> uint8 [H,W,3] RGB, or None after a warning."""
        try:
            return decode_buffer(msg.data, width=msg.width, height=msg.height, step=msg.step, encoding=msg.encoding)
        except FrameError as err:
            self(f"{what}-{err.reason}", f"{what}: {err}")
            return None


class StartupError(Exception):
    """A node cannot start with the parameters it was given; the message says which and why."""


def spin(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """Run one node until Ctrl-C or SIGTERM. Bad startup parameters end with one line, exit 2."""
    # Ctrl-C and SIGTERM only set a flag that the loop reads every 0.1 s (and once the node is built).
    # Python's KeyboardInterrupt lands at an arbitrary line, e.g. inside rclpy's Future.__init__,
    # leaving half-built objects whose __del__ prints a traceback at exit; rclpy's own handler, which
    # shuts the context down from another thread, left the executor waiting for good in 2 of 10 stops.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (StartupError, InvalidParameterTypeException, InvalidParameterValueException) as err:
        print(f"[ERROR] {err}", file=sys.stderr)
        return 2
    except ExternalShutdownException:
        pass
    finally:
        if node is not None:
            node.destroy_node()
        # A node stopped while it was being built leaves its parts in reference cycles; free them
        # now, while the libraries they hold are up (at exit EGL goes before MuJoCo's GL contexts).
        gc.collect()
        rclpy.try_shutdown()
    return 0
