"""Camera -> action latency across processes: camera_ingest + policy_controller, real rclpy/DDS.

A camera stand-in in this process publishes 640x480 rgb8 frames at 30 Hz on ``image_raw`` (stamped
with the wall clock at publish). camera_ingest (own process) turns them into 64x64 observations,
policy_controller (own process, ``random`` backend: the policy's own cost is not what is measured)
answers each with an Action stamped like the frame. Latency = arrival of the Action here - the
frame's stamp; the same for the 64x64 observation (the ingest stage alone).

Side by side in one run (each on a private ROS_DOMAIN_ID):
    640x480_large_data                  the deployed setting: FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (as the
                                        launch files set), default discovery range
    640x480_default_transports          Fast DDS default transports (what you get without the setting)
    640x480_large_data_localhost_range  LARGE_DATA with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: rmw_fastrtps
                                        then sets its own transports and LARGE_DATA no longer applies
    64x64_direct                        a model-size camera straight to policy_controller (the controller hop alone)

    python bench/bench_latency.py [--seconds 10]      # JSON on stdout and in bench/results/
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_results import publish

REPO = Path(__file__).resolve().parents[1]
RATE_HZ = 30.0


def start(module: str, env: dict, *ros_args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, "--ros-args", *ros_args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def percentiles(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {"p50_ms": None, "p95_ms": None, "max_ms": None}
    a = np.asarray(values_ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "max_ms": round(float(a.max()), 2),
    }


def scenario(
    width: int,
    height: int,
    transports: str | None,
    through_ingest: bool,
    seconds: float,
    domain: int,
    discovery_range: str = "SUBNET",
) -> dict:
    env = dict(
        os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE=discovery_range, PYTHONUNBUFFERED="1"
    )
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    if transports:
        env["FASTDDS_BUILTIN_TRANSPORTS"] = transports
    os.environ.clear()
    os.environ.update(env)  # this process's participant is created with the same transports

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from roboscape_r_ros.msg import Action
    from roboscape_r_ros.nodes.messaging import publish_estop_released

    camera_topic = "image_raw" if through_ingest else "observation"
    procs = [
        start(
            "roboscape_r_ros.nodes.policy_controller",
            env,
            "-p",
            "backend:=random",
            "-p",
            "stale_after_s:=2.0",
            "-p",
            "max_delta:=[2.0, 2.0, 2.0, 2.0]",
        )
    ]
    if through_ingest:
        procs.append(
            start("roboscape_r_ros.nodes.camera_ingest", env, "-p", "output_size:=64", "-p", "interpolation:=area")
        )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("bench_camera", context=context)
    publish_estop_released(node)  # not engaged: policy_controller sends nothing before it hears the e-stop
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 90)], -1).astype(np.uint8)
    image = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=frame.tobytes())
    image.header.frame_id = "camera"
    pub = node.create_publisher(Image, camera_topic, qos_profile_sensor_data)
    action_ms: dict[int, float] = {}
    ingest_ms: list[float] = []

    def stamp_ns(header) -> int:
        return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec

    def on_action(msg) -> None:
        action_ms.setdefault(stamp_ns(msg.header), (time.time_ns() - stamp_ns(msg.header)) / 1e6)

    def on_observation(msg) -> None:
        ingest_ms.append((time.time_ns() - stamp_ns(msg.header)) / 1e6)

    node.create_subscription(Action, "action", on_action, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    if through_ingest:
        node.create_subscription(Image, "observation", on_observation, qos_profile_sensor_data)

    def publish() -> int:
        image.header.stamp = node.get_clock().now().to_msg()
        pub.publish(image)
        return stamp_ns(image.header)

    def run_for(duration_s: float, stop_when=None) -> list[int]:
        sent, period, next_t = [], 1.0 / RATE_HZ, time.monotonic()
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            if time.monotonic() >= next_t:
                sent.append(publish())
                next_t += period
            executor.spin_once(timeout_sec=max(0.0, min(next_t - time.monotonic(), 0.005)))
            if stop_when is not None and stop_when():
                break
        return sent

    try:
        run_for(60.0, stop_when=lambda: len(action_ms) >= 5)  # discovery and warm-up
        if not action_ms:
            return {"error": "no action arrived within 60 s"}
        action_ms.clear()
        ingest_ms.clear()
        sent = run_for(seconds)
        settle = time.monotonic() + 0.5
        while time.monotonic() < settle:
            executor.spin_once(timeout_sec=0.01)
        answered = [action_ms[s] for s in sent if s in action_ms]
        result = {
            "camera": f"{width}x{height} rgb8 @ {RATE_HZ:g} Hz",
            "path": "camera -> camera_ingest -> policy_controller -> action"
            if through_ingest
            else "camera -> policy_controller -> action",
            "fastdds_transports": transports or "default",
            "discovery_range": discovery_range,
            "frames_sent": len(sent),
            "actions": len(answered),
            "lost_pct": round(100.0 * (1 - len(answered) / max(1, len(sent))), 1),
            **percentiles(answered),
        }
        if through_ingest:
            result["ingest_only"] = {"observations": len(ingest_ms), **percentiles(ingest_ms)}
        return result
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        for proc in procs:
            proc.send_signal(2)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per scenario (after warm-up)")
    opts = parser.parse_args()
    base = 100 + os.getpid() % 60  # private domains (discovery stays on this host's subnet: the deployed default)
    scenarios = {
        "640x480_large_data": scenario(640, 480, "LARGE_DATA", True, opts.seconds, base),
        "640x480_default_transports": scenario(640, 480, None, True, opts.seconds, base + 1),
        "640x480_large_data_localhost_range": scenario(
            640, 480, "LARGE_DATA", True, opts.seconds, base + 2, "LOCALHOST"
        ),
        "64x64_direct": scenario(64, 64, "LARGE_DATA", False, opts.seconds, base + 3),
    }
    main_p50 = scenarios["640x480_large_data"].get("p50_ms")
    direct_p50 = scenarios["64x64_direct"].get("p50_ms")
    report = {
        "bench": "latency",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "policy_backend": "random (policy cost excluded)",
        "scenarios": scenarios,
        "ratios": {
            "640x480_vs_64x64_direct_p50": round(main_p50 / direct_p50, 2) if main_p50 and direct_p50 else None,
            "lost_pct": {name: result.get("lost_pct") for name, result in scenarios.items()},
        },
    }
    return publish("bench_latency", report)


if __name__ == "__main__":
    main()
