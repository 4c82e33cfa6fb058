"""The out-of-domain guard on a live sim graph: the scene changes mid-episode, how soon is the arm held?

Real nodes in their own processes over DDS (a private ROS_DOMAIN_ID, loopback): sim_bridge (Meta-World,
camera at the world model's size), the dreamer in shadow mode (``dream/error``) and policy_controller
(learned backend, ``ood_guard.threshold`` on). This process publishes the goal image, sets sim_bridge's
``scene`` parameter and records every topic it needs. One repeat:

1. the training scene, a new episode (sim_bridge's reset service), a fresh policy_controller (a held
   controller in a per-action sim stays held: no action, no new prediction, no release);
2. the policy drives ``--in-domain-steps`` control steps: a guard hold here is a false hold;
3. ``scene`` is set (mid-episode; sim_bridge logs after which step and at which sim time);
4. until policy_controller logs its out-of-domain hold (or ``--timeout-s``): the control steps the sim
   took after the change (state stamps after the change's sim time: frames of the changed scene the
   arm moved on), the dream/error values that arrived, and the wall time from the parameter's
   acceptance to the hold's log line.

    python bench/ood_live.py --world-model RUN --policy POLICY.safetensors --goal-dataset DATASET \\
        --threshold 0.0123 [--repeats 5] [--scenes table,light,camera]   # JSON on stdout, bench/results/ood_live.json
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_results import publish

REPO = Path(__file__).resolve().parents[1]
SCENES = {  # the demo's out-of-domain scenes (docs/results/deployment_cpu.md, "The out-of-domain guard")
    "table": "{table_rgba: [0.25, 0.35, 0.75, 1]}",
    "light": "{light_scale: 0.5, headlight_ambient: [0.35, 0.35, 0.35]}",
    "camera": "{camera_position_jitter: 0.03, camera_rotation_jitter: 4.0}",
}


def ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class Graph:
    """The node processes and this process's recorder node on one private domain."""

    def __init__(self, args: argparse.Namespace, logs: Path) -> None:
        import rclpy
        from rcl_interfaces.msg import Log
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Float32, String
        from std_srvs.srv import Trigger

        from roboscape_r_ros.msg import Action

        self.args, self.logs = args, logs
        domain = 40 + os.getpid() % 50
        self.env = dict(
            os.environ,
            ROS_DOMAIN_ID=str(domain),
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
            FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA",
            PYTHONUNBUFFERED="1",
            OMP_NUM_THREADS="1",
        )
        os.environ.update({k: self.env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
        os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("ood_live_bench", namespace="roboscape", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        rosout = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.states: list[tuple[float, str, int]] = []  # (wall s, episode id, stamp ns)
        self.errors: list[tuple[float, float]] = []  # (wall s, dream/error)
        self.actions: list[tuple[float, int, str]] = []  # (wall s, stamp ns, source)
        self.log: list[tuple[float, str, str]] = []  # (wall s, node name, message)
        self.episode = ""
        self.node.create_subscription(JointState, "state", self.on_state, reliable)
        self.node.create_subscription(
            Float32, "dream/error", lambda m: self.errors.append((time.monotonic(), m.data)), reliable
        )
        self.node.create_subscription(
            Action, "action", lambda m: self.actions.append((time.monotonic(), ns(m.header.stamp), m.source)), reliable
        )
        self.node.create_subscription(String, "episode", self.on_episode, latched)
        self.node.create_subscription(
            Log, "/rosout", lambda m: self.log.append((time.monotonic(), m.name, m.msg)), rosout
        )
        self.goal_pub = self.node.create_publisher(Image, "goal_image", latched)
        self.reset_client = self.node.create_client(Trigger, "reset")
        self.sensor_qos = qos_profile_sensor_data
        self.processes: dict[str, subprocess.Popen] = {}

    def on_state(self, msg) -> None:
        stamp = ns(msg.header.stamp)
        if not self.states or self.states[-1][2] != stamp:  # republished frames keep their stamp
            self.states.append((time.monotonic(), self.episode, stamp))

    def on_episode(self, msg) -> None:
        self.episode = msg.data

    def start(self, name: str, *params: str, remap: tuple[str, ...] = ()) -> None:
        cmd = [sys.executable, "-m", f"roboscape_r_ros.nodes.{name}", "--ros-args", "-r", "__ns:=/roboscape"]
        config = REPO / "config" / f"{name}.yaml"
        cmd += ["--params-file", str(config)]
        for p in params:
            cmd += ["-p", p]
        for r in remap:
            cmd += ["-r", r]
        out = open(self.logs / f"{name}.log", "a")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self, name: str) -> None:
        proc = self.processes.pop(name)
        proc.send_signal(2)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def spin_until(self, condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if condition():
                return True
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}: see {self.logs / name}.log")
        return False

    def call(self, future, what: str):
        if not self.spin_until(future.done, 30):
            raise RuntimeError(f"no answer from {what}")
        return future.result()

    def set_scene(self, text: str) -> float:
        """sim_bridge's ``scene`` parameter; returns the wall time it was accepted."""
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        client = self.node.create_client(SetParameters, "sim_bridge/set_parameters")
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=text)
        result = self.call(
            client.call_async(SetParameters.Request(parameters=[Parameter(name="scene", value=value)])), "sim_bridge"
        )
        self.node.destroy_client(client)
        if not result.results[0].successful:
            raise RuntimeError(f"scene {text!r} refused: {result.results[0].reason}")
        return time.monotonic()

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        self.executor.shutdown()
        self.node.destroy_node()
        import rclpy

        rclpy.shutdown(context=self.context)


def goal_image(dataset: str):
    """The last frame of the dataset's first successful episode, as sensor_msgs/Image rgb8."""
    from sensor_msgs.msg import Image

    from roboscape_r_ros.data.reader import EpisodeDataset

    data = EpisodeDataset.open(dataset)
    episode = next(e for e in map(data.episode, range(data.num_episodes)) if e.success)
    frame = np.ascontiguousarray(episode.frames[-1])
    h, w, _ = frame.shape
    return Image(height=h, width=w, encoding="rgb8", step=3 * w, data=frame.tobytes())


def repeat(graph: Graph, args: argparse.Namespace, scene: str, index: int) -> dict:
    from std_srvs.srv import Trigger

    graph.set_scene("")
    reset = graph.call(graph.reset_client.call_async(Trigger.Request()), "reset")
    episode = reset.message
    graph.spin_until(lambda: graph.episode == episode, 10)
    log_start = len(graph.log)
    graph.start(
        "policy_controller",
        "backend:=learned",
        f"checkpoint:={args.policy}",
        "use_sim_time:=true",
        "stale_after_s:=2.0",
        f"ood_guard.threshold:={args.threshold}",
        f"ood_guard.trip_after:={args.trip_after}",
        remap=("observation:=image_raw",),
    )

    def steps_in_episode() -> list[tuple[float, str, int]]:
        return [s for s in graph.states if s[1] == episode]

    def guard_holds() -> list[tuple[float, str, str]]:
        return [
            e
            for e in graph.log[log_start:]
            if "policy_controller" in e[1] and "out-of-domain guard" in e[2] and "holding" in e[2]
        ]

    ran = graph.spin_until(lambda: len(steps_in_episode()) > args.in_domain_steps or guard_holds(), args.timeout_s)
    false_hold = bool(guard_holds())
    record = {"repeat": index, "scene": scene, "episode": episode, "false_hold_before_change": false_hold}
    if not ran or false_hold:
        record["in_domain_steps"] = len(steps_in_episode()) - 1
        graph.stop("policy_controller")
        return record
    errors_before = len(graph.errors)
    in_domain_errors = [e for t, e in graph.errors if t >= steps_in_episode()[0][0]]
    changed_at = graph.set_scene(SCENES[scene])
    change_log = None

    def change_logged():
        nonlocal change_log
        change_log = next(
            (m for _, n, m in graph.log[log_start:] if "sim_bridge" in n and m.startswith("scene changed")), None
        )
        return change_log is not None

    graph.spin_until(change_logged, 10)
    held = graph.spin_until(guard_holds, args.timeout_s)
    hold_wall = guard_holds()[0][0] if held else None
    graph.spin_until(lambda: False, 0.5)  # let the last actions and states land
    change_step = int(change_log.split("after step ")[1].split()[0])
    change_time = int(change_log.split("sim time ")[1].split()[0])
    after = [s for s in steps_in_episode() if s[2] > change_time]
    errors_after = [e for t, e in graph.errors[errors_before:] if hold_wall is None or t <= hold_wall]
    graph.stop("policy_controller")
    record.update(
        change_step=change_step,
        in_domain_steps=change_step,
        in_domain_errors=[round(e, 6) for e in in_domain_errors],
        held=held,
        steps_to_hold=len(after) if held else None,
        errors_to_hold=len(errors_after) if held else None,
        wall_s_to_hold=round(hold_wall - changed_at, 3) if held else None,
        errors_after_change=[round(e, 6) for e in errors_after],
    )
    return record


def summary(records: list[dict], threshold: float) -> dict:
    held = [r for r in records if r.get("held")]
    inside = [e for r in records for e in r.get("in_domain_errors", [])]
    steps = [r["steps_to_hold"] for r in held]
    walls = [r["wall_s_to_hold"] for r in held]
    return {
        "repeats": len(records),
        "changed_mid_episode": sum("change_step" in r for r in records),
        "held": len(held),
        "false_holds_before_change": sum(r["false_hold_before_change"] for r in records),
        "in_domain_steps": sum(r["in_domain_steps"] for r in records),
        "in_domain_errors": len(inside),
        "in_domain_errors_above_threshold": sum(e > threshold for e in inside),
        "in_domain_error_max": max(inside) if inside else None,
        "steps_to_hold_median": float(np.median(steps)) if steps else None,
        "steps_to_hold_max": max(steps) if steps else None,
        "errors_to_hold_median": float(np.median([r["errors_to_hold"] for r in held])) if held else None,
        "wall_s_to_hold_median": round(float(np.median(walls)), 3) if walls else None,
        "wall_s_to_hold_max": max(walls) if walls else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-model", required=True, help="world-model run folder of the dreamer")
    parser.add_argument("--policy", required=True, help="policy checkpoint of policy_controller (learned backend)")
    parser.add_argument(
        "--goal-dataset", required=True, help="dataset whose first successful episode's last frame is the goal"
    )
    parser.add_argument(
        "--threshold", type=float, required=True, help="ood_guard.threshold (roboscape-r calibrate-ood)"
    )
    parser.add_argument("--trip-after", type=int, default=3, help="ood_guard.trip_after")
    parser.add_argument("--task", default="reach-v3")
    parser.add_argument("--resolution", type=int, default=32, help="sim_bridge camera: the world model's image size")
    parser.add_argument("--scenes", default="table,light,camera", help=f"changed scenes among {', '.join(SCENES)}")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per scene")
    parser.add_argument("--in-domain-steps", type=int, default=60, help="control steps in the training scene first")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="per phase")
    parser.add_argument("--output", default="ood_live", help="name of the JSON in bench/results/")
    args = parser.parse_args()
    scenes = args.scenes.split(",")
    for scene in scenes:
        if scene not in SCENES:
            parser.error(f"unknown scene '{scene}' (scenes: {', '.join(SCENES)})")
    with tempfile.TemporaryDirectory() as logs:
        graph = Graph(args, Path(logs))
        try:
            graph.start(
                "sim_bridge",
                f"task:={args.task}",
                f"camera_resolution:={args.resolution}",
                "end_on_success:=false",
                "max_steps:=100000",
            )
            graph.start(
                "dreamer",
                "mode:=shadow",
                f"world_model:={args.world_model}",
                "use_sim_time:=true",
                remap=("observation:=image_raw",),
            )
            graph.goal_pub.publish(goal_image(args.goal_dataset))
            if not graph.spin_until(lambda: graph.reset_client.service_is_ready() and graph.states, 120):
                raise RuntimeError("sim_bridge did not come up")
            records = []
            for scene in scenes:
                for i in range(args.repeats):
                    records.append(repeat(graph, args, scene, i))
                    print(
                        f"{scene} {i}: { {k: v for k, v in records[-1].items() if 'errors_' not in k} }",
                        file=sys.stderr,
                    )
        except Exception:
            for name in ("sim_bridge", "dreamer", "policy_controller"):
                path = Path(logs) / f"{name}.log"
                if path.exists():
                    print(f"--- {name}\n{path.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            graph.close()
    report = {
        "bench": "ood_live",
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "world_model": args.world_model,
        "policy": args.policy,
        "threshold": args.threshold,
        "trip_after": args.trip_after,
        "task": args.task,
        "resolution": args.resolution,
        "scenes": {s: SCENES[s] for s in scenes},
        "in_domain_steps_per_repeat": args.in_domain_steps,
        "summary": {s: summary([r for r in records if r["scene"] == s], args.threshold) for s in scenes},
        "repeats": records,
    }
    publish(args.output, report)


if __name__ == "__main__":
    main()
