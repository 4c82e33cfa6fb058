"""What every roboscape_r_ros node shares: parameters declared from their dataclasses (and refused
changes), torch threads, throttled logs and drops, hot reload of a model file, a clean spin."""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from roboscape_r_ros.config import ConfigError, FieldSpec, field_specs
from roboscape_r_ros.data.frames import FrameError, decode_buffer
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.nodes.entry import catch_stop_signals, ignore_stop_signals
from roboscape_r_ros.parameters import build
from roboscape_r_ros.runtime.inference.reload import FileWatch

T = TypeVar("T")


_ARRAY_TYPES = {
    str: Parameter.Type.STRING_ARRAY,
    float: Parameter.Type.DOUBLE_ARRAY,
    int: Parameter.Type.INTEGER_ARRAY,
    bool: Parameter.Type.BOOL_ARRAY,
}


def limit_threads(threads: int) -> None:
    """torch's CPU threads in this node process (threads_parameter; 0: leave its default)."""
    if threads <= 0:
        return
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    else:  # not imported yet (expert and random backends): read when it is
        os.environ["OMP_NUM_THREADS"] = str(threads)


def declare_parameters(node: Node, cls: type[T]) -> T:
    """Declare every parameter of dataclass ``cls`` (parameters) with its description, range and
    read-only flag, and return ``cls`` built from the values the node was started with."""
    values = {}
    for spec in field_specs(cls):
        description = spec.help
        if spec.choices:
            description += f" ({', '.join(map(str, spec.choices))})"
        elif spec.range_text and (spec.low is None or spec.high is None):  # a ROS range needs both ends
            description += f" (range {spec.range_text})"
        descriptor = ParameterDescriptor(description=description, read_only=spec.read_only)
        if spec.low is not None and spec.high is not None:  # a range has both ends
            if isinstance(spec.default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
            else:
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)
                ]
        default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        # An empty list says nothing of its element type: declare the type instead (unset -> None).
        declared = _array_type(spec) if default == [] else default
        value = node.declare_parameter(spec.name, declared, descriptor).value
        values[spec.name] = () if value is None else value
    try:
        return build(cls, values)
    except ConfigError as err:
        raise StartupError(f"{node.get_name()}: {err}") from None


def _array_type(spec: FieldSpec) -> Parameter.Type:
    """The ROS array type of list parameter ``spec`` (tuple[str, ...] -> STRING_ARRAY)."""
    if spec.item_type is None:
        raise TypeError(f"parameter {spec.name}: an empty list default needs a tuple[<type>, ...] field type")
    return _ARRAY_TYPES[spec.item_type]


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


def serve_reload(node: Node, service: str, path: str, check_s: float, reload: Callable[[], str]) -> None:
    """Hot reload of the model file at ``path``: the Trigger service ``service`` and, with ``check_s`` > 0, a
    check of the file every ``check_s`` seconds (runtime.inference.reload.FileWatch) call ``reload``. Its message is
    logged and answered; a RoboscapeError (a file that cannot replace the running model) is logged as one
    error line and answered as a failure, and the running model stays."""

    def run() -> tuple[bool, str]:
        try:
            message = reload()
        except RoboscapeError as err:
            node.get_logger().error(str(err))
            return False, str(err)
        node.get_logger().info(message)
        return True, message

    def on_service(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = run()
        return response

    node.create_service(Trigger, service, on_service)
    if path and check_s > 0:
        watch = FileWatch(path)

        def check() -> None:
            if watch.changed():
                run()

        node.create_timer(check_s, check, clock=Clock(clock_type=ClockType.STEADY_TIME))


class StartupError(Exception):
    """A node cannot start with the parameters it was given; the message says which and why."""


def spin(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """Run one node until Ctrl-C or SIGTERM. Bad startup parameters end with one line, exit 2."""
    # Ctrl-C and SIGTERM only set a flag (nodes/entry.py) that the loop reads every 0.1 s (and once the
    # node is built). Python's KeyboardInterrupt lands at an arbitrary line, e.g. inside rclpy's
    # Future.__init__, leaving half-built objects whose __del__ prints a traceback at exit; rclpy's own
    # handler, which shuts the context down from another thread, left the executor waiting for good in
    # 2 of 10 stops.
    stop = catch_stop_signals()
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
        ignore_stop_signals()
        if node is not None:
            node.destroy_node()
        # A node stopped while it was being built leaves its parts in reference cycles; free them
        # now, while the libraries they hold are up (at exit EGL goes before MuJoCo's GL contexts).
        gc.collect()
        rclpy.try_shutdown()
    return 0
