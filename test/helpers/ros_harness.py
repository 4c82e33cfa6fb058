"""Real rclpy across processes for tests: a private ROS_DOMAIN_ID, node subprocesses, a spin helper, the
harness's QoS profiles and message builders.

Each RosHarness gets its own domain id, so test runs on one machine (and tests inside a run) never
see each other's traffic; discovery stays on loopback.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from helpers import REPO

RELIABLE_50 = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
RELIABLE_500 = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)  # a launched loop's whole episodes
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)

_domain_ids = itertools.count((os.getpid() * 7) % 80 + 1)


class RosHarness:
    def __init__(self) -> None:
        self.domain_id = next(_domain_ids) % 100 + 1
        self.env = dict(
            os.environ,
            ROS_DOMAIN_ID=str(self.domain_id),
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
            FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA",
            PYTHONUNBUFFERED="1",
        )
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self.node = rclpy.create_node("test_harness", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.processes: list[subprocess.Popen] = []

    def start(self, target: str, *ros_args: str) -> subprocess.Popen:
        """Run a module (or a .py script) with `--ros-args ...` in its own process on this domain."""
        cmd = [sys.executable, target] if target.endswith(".py") else [sys.executable, "-m", target]
        if ros_args:
            cmd += ["--ros-args", *ros_args]
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.processes.append(proc)
        return proc

    def release_estop(self, topic: str = "estop"):
        """The latched "not engaged" e-stop a sim graph has (sim_bridge's): without a value on estop
        policy_controller sends nothing. Returns the publisher."""
        from roboscape_r_ros.nodes.messaging import publish_estop_released

        return publish_estop_released(self.node, topic)

    def spin_until(
        self, condition: Callable[[], bool], timeout_s: float, tick: Callable[[], None] | None = None
    ) -> bool:
        """Spin the harness node until condition() holds; tick() runs between spins (e.g. republish)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if tick is not None:
                tick()
            self.executor.spin_once(timeout_sec=0.05)
            if condition():
                return True
        return False

    def stop(self, proc: subprocess.Popen, timeout_s: float = 10.0) -> str:
        """SIGINT the process (as Ctrl-C or ros2 launch would) and return everything it printed."""
        if proc.poll() is None:
            proc.send_signal(2)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        return out

    def close(self) -> None:
        for proc in self.processes:
            self.stop(proc)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


class Output:
    """Lines a process prints, read as they come (the sim's own account of each episode)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines = proc, []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in iter(self.proc.stdout.readline, ""):
                self.lines.append(line)
        except (ValueError, OSError):  # the harness closed the pipe at teardown
            pass

    def find(self, pattern: str):
        return next(iter(self.find_all(pattern)), None)

    def find_all(self, pattern: str) -> list[re.Match]:
        return [m for m in map(re.compile(pattern).search, list(self.lines)) if m]

    def wait(self, ros, pattern: str, timeout_s: float):
        assert ros.spin_until(lambda: self.find(pattern) is not None, timeout_s), f"no '{pattern}' in:\n{self.text()}"
        return self.find(pattern)

    def ctrl_c(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the launcher did not stop within 60 s after Ctrl-C:\n{self.text()}") from None
        self.thread.join(timeout=10)
        return self.text()

    def text(self) -> str:
        return "".join(self.lines)


def assert_all_stopped(log: str, proc: subprocess.Popen) -> None:
    """The launcher ``proc`` (its output: ``log``) exited 0 after stopping each of the 3 nodes it started."""
    assert proc.returncode == 0, log
    pids = [int(p) for p in re.findall(r"started \w+ \(pid (\d+)\)", log)]
    assert len(pids) == 3, log
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "all nodes stopped" in log and "Traceback" not in log, log


def image(frame: np.ndarray, stamp_ns: int, encoding: str = "rgb8", frame_id: str = ""):
    """A sensor_msgs/Image of ``frame`` (uint8 [H, W, C]) stamped ``stamp_ns``, labelled ``encoding`` whatever
    the frame holds (a wrong one is a test's bad input)."""
    from sensor_msgs.msg import Image

    msg = Image(
        height=frame.shape[0],
        width=frame.shape[1],
        encoding=encoding,
        step=frame.shape[1] * frame.shape[2],
        data=frame.tobytes(),
    )
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def action(values, stamp=None, **fields):
    """A roboscape_r_ros/Action in Meta-World's Sawyer spec (delta mode) answering ``stamp``;
    ``fields`` override any other field (bad names, modes, episode ids...)."""
    from roboscape_r_ros.msg import Action

    a = Action(
        names=["dx", "dy", "dz", "gripper"],
        units=["m", "m", "m", "1"],
        values=[float(v) for v in values],
        scale=[0.01, 0.01, 0.01, 1.0],
        mode=Action.MODE_DELTA,
    )
    if stamp is not None:
        a.header.stamp = stamp
    for key, value in fields.items():
        setattr(a, key, value)
    return a


def startup_error(ros: RosHarness, node_class: type, *params: str) -> str:
    """Build ``node_class`` in this process on ``ros``'s domain with these parameters (``name:=value``); the message
    it refuses them with, one line: what a node process prints alone before it exits with 2 (node_tools.spin,
    whose errors these are). The process itself is tested once per node in test_node_parameters."""
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    from roboscape_r_ros.nodes.node_tools import StartupError

    rclpy.init(args=["--ros-args", *(arg for p in params for arg in ("-p", p))], domain_id=ros.domain_id)
    try:
        node_class()
    except (StartupError, InvalidParameterTypeException, InvalidParameterValueException) as err:
        message = str(err).strip()
    else:
        raise AssertionError(f"{node_class.__name__} started with {params}")
    finally:
        rclpy.shutdown()
    assert message and "\n" not in message, message
    return message
