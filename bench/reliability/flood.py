"""A flood of bad camera frames among good ones, real mode, for ``seconds``.

A sender process (this file, `sender`: one Python thread, so at most one core) publishes, round
robin and as fast as it can, on the camera topic camera_ingest reads:
    encoding     640x480 'yuv422' (not a supported encoding)
    zero_size    0x0 rgb8, no data
    truncated    640x480 rgb8 with 1000 bytes of data
    short_step   640x480 rgb8 whose step is shorter than a row
    bgra8_720p   1280x720 bgra8: a valid but large frame (3.7 MB), converted and answered like any other
Meanwhile this process, the lab camera, sends good 640x480 rgb8 frames at 30 Hz and counts the Actions
answering them. Reported: the sender's rate and CPU share, good frames answered during the flood,
whether every node kept its process, and how many log lines each node printed during the flood
(camera_ingest warns once per kind of bad frame per warning_period_s).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

from common import LAB_CAMERA, Graph, Probe, alive, percentiles, private_domain, ros_env, wait_for_answers

DROPPED = re.compile(r"camera_ingest.*\[(\d+) dropped in all\]")
KINDS = ("encoding", "zero_size", "truncated", "short_step", "bgra8_720p")


def bad_images() -> dict:
    from sensor_msgs.msg import Image

    return {
        "encoding": Image(height=480, width=640, encoding="yuv422", step=1280, data=bytes(640 * 480 * 2)),
        "zero_size": Image(height=0, width=0, encoding="rgb8", step=0, data=b""),
        "truncated": Image(height=480, width=640, encoding="rgb8", step=1920, data=bytes(1000)),
        "short_step": Image(height=480, width=640, encoding="rgb8", step=100, data=bytes(100 * 480)),
        "bgra8_720p": Image(height=720, width=1280, encoding="bgra8", step=5120, data=bytes(range(256)) * 14400),
    }


def sender(domain: int, seconds: float, topic: str) -> None:
    """The flood: publish bad frames round robin until ``seconds`` passed; counts as JSON on stdout."""
    import faulthandler
    import os

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    faulthandler.dump_traceback_later(seconds + 30, exit=True)  # a sender stuck in publish says where
    rclpy.init(domain_id=domain)
    node = rclpy.create_node("flood_sender")
    pub = node.create_publisher(Image, topic, qos_profile_sensor_data)
    images = bad_images()
    time.sleep(2.0)  # discovery
    counts = dict.fromkeys(KINDS, 0)
    nbytes = 0
    cpu0, start = os.times(), time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        for kind in KINDS:
            image = images[kind]
            image.header.stamp = node.get_clock().now().to_msg()
            pub.publish(image)
            counts[kind] += 1
            nbytes += len(image.data)
    wall, cpu1 = time.monotonic() - start, os.times()
    total = sum(counts.values())
    print(
        json.dumps(
            {
                "sent": counts,
                "messages_per_s": round(total / wall, 1),
                "megabytes_per_s": round(nbytes / wall / 1e6, 1),
                "sender_cpu_share": round((cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall, 2),
                "seconds": round(wall, 2),
            }
        ),
        flush=True,
    )
    node.destroy_node()
    rclpy.shutdown()


def run(seconds: float = 60.0) -> dict:
    domain = private_domain(5)
    env = ros_env(domain)
    graph = Graph(env, "real", f"arg.camera={LAB_CAMERA}")
    probe = Probe(domain)
    probe.camera(LAB_CAMERA)
    probe.lab_estop()
    flood = None
    try:
        if not wait_for_answers(probe, 10, 90):
            return {"error": "no Action answered the camera within 90 s", "log": graph.tail()}
        before = probe.stream(5.0)
        pids = dict(graph.pids)
        flood = subprocess.Popen(
            [sys.executable, __file__, "sender", str(domain), str(seconds), LAB_CAMERA],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(flood.stdout), daemon=True).start()
        start = time.monotonic()

        def finished() -> bool:
            return flood.poll() is not None or any(line.startswith("{") for line in lines)

        during = probe.stream(seconds + 2.0 + 40.0, tick=finished)
        end = time.monotonic()
        after = probe.stream(5.0)
        counts = next((json.loads(x) for x in lines if x.startswith("{")), {"error": lines[-20:]})
        counts["exited_by_itself"] = flood.poll() is not None
        processed = [int(m.group(1)) for t, x in graph.lines if start <= t and (m := DROPPED.search(x))]
        good = set(before) | set(during) | set(after)
        return {
            "graph": "roboscape-r launch mode=real arg.camera=" + LAB_CAMERA + " (random backend)",
            "flood": counts,
            "good_frames": {
                "rate_hz": 30,
                "before": {"sent": len(before), "answered": len(probe.answered(before))},
                "during": {"sent": len(during), "answered": len(probe.answered(during))},
                "after": {"sent": len(after), "answered": len(probe.answered(after))},
                "latency_during": percentiles([probe.answers[s][1] for s in probe.answered(during)]),
            },
            "bad_frames_camera_ingest_processed": max(processed, default=0),  # the rest DDS dropped (best effort)
            "nodes_same_process": {name: alive(pid) and graph.pids.get(name) == pid for name, pid in pids.items()},
            "graph_running": graph.proc.poll() is None,
            "log_lines_during_flood": {
                name: graph.count(rf"^\[{name}\]", start, end) for name in ("camera_ingest", "policy_controller")
            },
            "camera_ingest_warnings": [
                line
                for t, line in graph.lines
                if start <= t <= end and line.startswith("[camera_ingest]") and "dropped" in line
            ][:8],
            "bgra8_720p_frames_answered": len(set(probe.answers) - good),  # the flood's only valid frames
        }
    finally:
        if flood is not None and flood.poll() is None:
            flood.kill()
        probe.close()
        graph.stop()


if __name__ == "__main__" and sys.argv[1:2] == ["sender"]:
    sender(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
