"""What the reliability scenarios share: the deploy graph as `roboscape-r launch` runs it, a probe
node in this process (camera stand-in, Action counter), per-process RSS from /proc, percentiles.

Every process (graph, probe, flood sender) runs on one private ROS_DOMAIN_ID with
FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA and the default discovery range: 640x480 frames are lost
with the default transports, and LOCALHOST discovery makes rmw_fastrtps replace LARGE_DATA.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "reliability"
LAB_CAMERA = "/lab_cam/color/image_raw"  # a real camera's topic, remapped onto image_raw as in real mode
_STARTED = re.compile(r"^\[launch\] started (\S+) \(pid (\d+)\)")


def ros_env(domain: int) -> dict[str, str]:
    """The environment of every process of a scenario; this process adopts it too (its probe
    participant must use the same transports)."""
    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(domain),
        FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    )
    env.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    os.environ.clear()
    os.environ.update(env)
    return env


def private_domain(offset: int = 0) -> int:
    return 170 + (os.getpid() + offset) % 60


def rss_mib(pid: int) -> float | None:
    """Resident set size of a live process, None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def percentiles(values_ms: list[float]) -> dict[str, float | None]:
    if not values_ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    a = np.asarray(values_ms)
    return {f"p{q}_ms": round(float(np.percentile(a, q)), 2) for q in (50, 95, 99)} | {
        "max_ms": round(float(a.max()), 2)
    }


class Graph:
    """`roboscape-r launch` in its own process: every output line timestamped, each node's current pid."""

    def __init__(self, env: dict[str, str], mode: str, *overrides: str) -> None:
        argv = [sys.executable, "-m", "roboscape_r_ros.cli", "launch", f"mode={mode}", f"namespace={NAMESPACE}"]
        self.proc = subprocess.Popen(
            [*argv, *overrides],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            process_group=0,
        )
        self.lines: list[tuple[float, str]] = []
        self.pids: dict[str, int] = {}
        self.starts: dict[str, list[tuple[float, int]]] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            now = time.monotonic()
            with self._lock:
                self.lines.append((now, line.rstrip("\n")))
                started = _STARTED.match(line)
                if started:
                    name, pid = started.group(1), int(started.group(2))
                    self.pids[name] = pid
                    self.starts.setdefault(name, []).append((now, pid))

    def find(self, pattern: str, after: float = 0.0) -> tuple[float, str] | None:
        """The first output line matching ``pattern`` printed at or after monotonic time ``after``."""
        regex = re.compile(pattern)
        with self._lock:
            return next(((t, line) for t, line in self.lines if t >= after and regex.search(line)), None)

    def count(self, pattern: str, start: float, end: float) -> int:
        regex = re.compile(pattern)
        with self._lock:
            return sum(1 for t, line in self.lines if start <= t <= end and regex.search(line))

    def rss(self) -> dict[str, float | None]:
        with self._lock:
            pids = dict(self.pids)
        return {name: rss_mib(pid) for name, pid in pids.items()} | {"launch": rss_mib(self.proc.pid)}

    def stop(self, timeout_s: float = 30.0) -> int:
        """Ctrl-C for the launcher (it stops every node once); its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def tail(self, n: int = 30) -> list[str]:
        with self._lock:
            return [line for _, line in self.lines[-n:]]


class Probe:
    """A node in this process: publishes camera frames, counts the Actions that answer them (by stamp)."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from roboscape_r_ros.msg import Action

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("reliability_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._wall_to_monotonic = time.monotonic() - time.time()
        self.senders: list[bytes] = []  # the publisher (GID) of each of self.actions: which process sent it
        self._sequence, self._publishers_seen = 0, 0  # without GIDs (Jazzy): see _sender
        self.answers: dict[int, tuple[float, float]] = {}  # frame stamp ns -> (arrival monotonic, latency ms)
        self.actions: list[tuple[float, object]] = []  # (arrival monotonic, Action): all, holds and repeats included
        self.node.create_subscription(
            Action,
            f"/{NAMESPACE}/action",
            self._on_action,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
        )
        self._camera = None
        self._image = None

    def _on_action(self, msg, info) -> None:
        # When DDS received it, not when this callback ran: under load the probe's executor lags
        # behind, and an old process's answers taken late must not pass for a new process's.
        received_ns = info["received_timestamp"] or time.time_ns()
        self.actions.append((received_ns / 1e9 + self._wall_to_monotonic, msg))
        self.senders.append(self._sender(info))
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.answers.setdefault(stamp, (received_ns / 1e9 + self._wall_to_monotonic, (received_ns - stamp) / 1e6))

    def _sender(self, info: dict) -> bytes:
        """The publisher of a message: its GID where the message info has it (rclpy 9, Kilted). Jazzy's
        has none; there a new publisher is told by its sequence numbers starting again, which holds
        because one process at a time publishes Actions here (the old one is killed before the new
        one starts)."""
        if info.get("publisher_gid"):
            return bytes(info["publisher_gid"]["data"])
        sequence = info["publication_sequence_number"]
        self._publishers_seen += sequence <= self._sequence
        self._sequence = sequence
        return f"publisher {self._publishers_seen}".encode()

    def camera(self, topic: str, width: int = 640, height: int = 480) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self._camera = self.node.create_publisher(Image, topic, qos_profile_sensor_data)
        self._image = good_image(width, height)

    def lab_estop(self) -> None:
        """The lab's e-stop, not engaged, latched: policy_controller sends nothing before it hears one."""
        from roboscape_r_ros.nodes.messaging import publish_estop_released

        publish_estop_released(self.node, f"/{NAMESPACE}/estop")

    def publish_frame(self) -> int:
        """One camera frame stamped with the wall clock now; its stamp (ns)."""
        self._image.header.stamp = self.node.get_clock().now().to_msg()
        self._camera.publish(self._image)
        return self._image.header.stamp.sec * 1_000_000_000 + self._image.header.stamp.nanosec

    def stream(self, seconds: float, rate_hz: float = 30.0, tick: Callable[[], bool | None] | None = None) -> list[int]:
        """Publish frames at ``rate_hz`` for ``seconds`` (0: no frames, spin only), spinning between;
        ``tick()`` runs every loop and ends the stream early by returning True. The stamps sent."""
        sent, period = [], 1.0 / rate_hz if rate_hz else None
        next_t, end = time.monotonic(), time.monotonic() + seconds
        while time.monotonic() < end:
            if period is not None and time.monotonic() >= next_t:
                sent.append(self.publish_frame())
                next_t += period
                if next_t < time.monotonic() - 1.0:  # far behind (a stall): do not burst to catch up
                    next_t = time.monotonic()
            wait = 0.005 if period is None else max(0.0, min(next_t - time.monotonic(), 0.005))
            self.executor.spin_once(timeout_sec=wait)
            if tick is not None and tick():
                break
        return sent

    def answered(self, sent: list[int]) -> list[int]:
        return [s for s in sent if s in self.answers]

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)


def good_image(width: int, height: int):
    """A 640x480-style rgb8 test card (gradients), stamped by the caller."""
    from sensor_msgs.msg import Image

    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 90)], -1).astype(np.uint8)
    image = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=frame.tobytes())
    image.header.frame_id = "lab_camera"
    return image


def wait_for_answers(probe: Probe, count: int, timeout_s: float) -> bool:
    """Stream until ``count`` frames were answered (discovery and warm-up)."""
    start = len(probe.answers)
    probe.stream(timeout_s, tick=lambda: len(probe.answers) - start >= count)
    return len(probe.answers) - start >= count


def lab_graph(domain: int) -> tuple[Graph, Probe]:
    """The deploy graph in real mode with its camera remapped to the lab camera, and a probe playing that
    camera and the lab's e-stop (not engaged)."""
    graph = Graph(ros_env(domain), "real", f"arg.camera={LAB_CAMERA}")
    probe = Probe(domain)
    probe.camera(LAB_CAMERA)
    probe.lab_estop()
    return graph, probe
