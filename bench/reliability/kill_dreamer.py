"""kill -9 of the dreamer mid-run in the imagination graph, policy_controller holding meanwhile.

`roboscape-r launch mode=imagination` (dreamer + reward_publisher + policy_controller, random
backend) on a random tiny 64x64 world model (bench_dreamer.make_run: speed and plumbing do not
depend on the weights); reward_publisher takes its goal from the goal_image topic and scores with
SSIM (the goal model and effnet are not what is tested). The dreamer is a `respawn` node: the launcher
restarts it after 2 s. policy_controller's watchdog must hold the arm (stale_after_s, one hold, in
DELTA mode no Action) and resume on the new dreamer's frames, in the same process.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

from common import NAMESPACE, Graph, Probe, alive, private_domain, ros_env


def run(run_s: float = 5.0) -> dict:
    from bench_dreamer import make_run

    domain = private_domain(3)
    env = ros_env(domain)
    with tempfile.TemporaryDirectory(prefix="reliability_dreamer_") as tmp:
        world_model = make_run(Path(tmp))
        graph = Graph(
            env,
            "imagination",
            f"arg.world_model={world_model}",
            "param.reward_publisher.goal_source=topic",
            "param.reward_publisher.perception=ssim",
        )
        probe = Probe(domain)
        try:
            return measure(graph, probe, run_s)
        finally:
            probe.close()
            graph.stop()


def measure(graph: Graph, probe: Probe, run_s: float) -> dict:
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    frames: list[float] = []
    probe.node.create_subscription(
        Image, f"/{NAMESPACE}/observation", lambda _: frames.append(time.monotonic()), qos_profile_sensor_data
    )
    probe.stream(120.0, rate_hz=0, tick=lambda: len(probe.actions) >= 20)
    if len(probe.actions) < 20:
        return {"error": "the imagination loop did not start within 120 s", "log": graph.tail()}
    started = time.monotonic()
    probe.stream(run_s, rate_hz=0)
    rate = sum(1 for t, _ in probe.actions if t >= started) / (time.monotonic() - started)
    controller, reward = graph.pids["policy_controller"], graph.pids["reward_publisher"]
    killed = time.monotonic()
    os.kill(graph.pids["dreamer"], signal.SIGKILL)

    def resumed() -> bool:
        return any(t > killed + 0.05 for t, _ in probe.actions) and graph.find("started dreamer", killed) is not None

    probe.stream(90.0, rate_hz=0, tick=resumed)
    if not resumed():
        return {"error": "the loop did not resume within 90 s of the kill", "log": graph.tail()}
    first_action = min(t for t, _ in probe.actions if t > killed + 0.05)
    probe.stream(run_s, rate_hz=0)
    after = sum(1 for t, _ in probe.actions if t >= first_action) / (time.monotonic() - first_action)

    def since_kill(pattern: str) -> float | None:
        found = graph.find(pattern, killed)
        return round(found[0] - killed, 3) if found else None

    in_gap = [msg for t, msg in probe.actions if killed + 0.05 < t < first_action]
    return {
        "graph": "roboscape-r launch mode=imagination (random backend, tiny random 64x64 world model)",
        "on_exit": "respawn after 2 s (roboscape_r_ros/launching/graph.py)",
        "steps_per_s_before": round(rate, 1),
        "steps_per_s_after": round(after, 1),
        "launcher_reported_s": since_kill(r"dreamer exited with status"),
        "controller_hold_logged_s": since_kill(r"no fresh observation for .* holding the arm"),
        "dreamer_restarted_s": since_kill(r"started dreamer"),
        "first_frame_after_kill_s": round(
            min((t for t in frames if t > killed + 0.05), default=float("nan")) - killed, 3
        ),
        "controller_resumed_logged_s": since_kill(r"fresh observations again: resuming"),
        "first_action_after_kill_s": round(first_action - killed, 3),
        "actions_while_dreamer_down": len(in_gap),
        "hold_actions_while_down": sum(1 for msg in in_gap if msg.source.startswith("hold:")),
        "controller_same_process": alive(controller) and graph.pids["policy_controller"] == controller,
        "reward_publisher_same_process": alive(reward) and graph.pids["reward_publisher"] == reward,
    }
