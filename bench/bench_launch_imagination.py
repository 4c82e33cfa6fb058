"""The imagination graph's step rate as a lab runs it, beside the same world model's in-process rate, in one run.

launched    `ros2 launch roboscape_r_ros train.launch.py world_model:=<run>` (or, with --launcher roboscape-r,
            `roboscape-r launch mode=imagination`, the same graph spec without colcon) on a private
            ROS_DOMAIN_ID, started from a temporary folder. An outside best-effort subscriber in this process
            counts, after --warmup seconds, for --seconds: imagined steps (distinct episode/step pairs on the
            dreamer's `done`), Actions, and the steps that got a Reward (reward_publisher pairs by stamp).
in_process  the dreamer's own world-model runner (runtime.inference.runners, opened as the dreamer's default runtime
            `auto` opens it: ONNX Runtime where the run was exported, else torch) stepping one environment from a
            real-sized context, back to back, for --seconds.

The launcher's torch threads per node are the nodes' `threads` parameter (1); in process, torch's default.

    make colcon && source install/setup.bash    # ros2 launch needs the built package (README: Tests, launch)
    python bench/bench_launch_imagination.py --world-model outputs/runs/wm3_w4     # JSON: stdout, bench/results/
    python bench/bench_launch_imagination.py --world-model outputs/runs/wm3_w4 --launcher roboscape-r
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_results import publish

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"


def in_process_rate(checkpoint: Path, seconds: float) -> dict:
    from roboscape_r_ros.runtime.inference.runners import open_world_model_runner

    runner = open_world_model_runner(checkpoint, "auto")
    C, S, A = runner.cfg.context_length - 1, runner.cfg.image_size, runner.cfg.action_dim
    rng = np.random.default_rng(0)
    state = runner.encode_context(
        rng.integers(0, 256, (1, C, S, S, 3), dtype=np.uint8), np.zeros((1, C - 1, A), np.float32)
    )
    for _ in range(5):  # warm-up
        state, _, _ = runner.step(state, rng.uniform(-1, 1, (1, A)).astype(np.float32))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        state, _, _ = runner.step(state, rng.uniform(-1, 1, (1, A)).astype(np.float32))
        steps += 1
    elapsed = time.perf_counter() - start
    import torch

    return {
        "runtime": runner.runtime,
        "torch_threads": torch.get_num_threads(),
        "steps": steps,
        "seconds": elapsed,
        "steps_per_s": steps / elapsed,
    }


def launch_command(launcher: str, world_model: Path, extra: list[str]) -> list[str]:
    if launcher == "ros2":
        if shutil.which("ros2") is None:
            raise SystemExit(
                "ros2 is not on PATH: source the install space of `make colcon` (or --launcher roboscape-r)"
            )
        found = subprocess.run(["ros2", "pkg", "prefix", "roboscape_r_ros"], capture_output=True, text=True)
        if found.returncode != 0:
            raise SystemExit("ros2 finds no roboscape_r_ros package: source its colcon install space first")
        return ["ros2", "launch", "roboscape_r_ros", "train.launch.py", f"namespace:={NAMESPACE}"] + [
            f"world_model:={world_model}",
            *extra,
        ]
    return [sys.executable, "-m", "roboscape_r_ros.cli", "launch", "mode=imagination", f"namespace={NAMESPACE}"] + [
        f"arg.world_model={world_model}",
        *extra,
    ]


def launched_rate(cmd: list[str], env: dict, domain: int, warmup: float, seconds: float) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from roboscape_r_ros.msg import Action, Reward

    elsewhere = tempfile.TemporaryDirectory()  # a lab starts it from its own folder, not the repository
    log = open(Path(elsewhere.name) / "launch.log", "w+")  # noqa: SIM115 (closed with the folder)
    proc = subprocess.Popen(
        cmd, cwd=elsewhere.name, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("bench_outside_subscriber", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    counting = {"on": False}
    steps, rewarded, actions, holds = set(), set(), [0], [0]

    def on_done(msg) -> None:
        if counting["on"]:
            steps.add((msg.episode_id, msg.step))

    def on_reward(msg) -> None:
        if counting["on"]:
            rewarded.add((msg.episode_id, msg.step))

    def on_action(msg) -> None:
        if counting["on"]:
            actions[0] += 1
            holds[0] += msg.source.startswith("hold")

    outside = QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT)  # deep: no drop while this spins
    node.create_subscription(Reward, f"/{NAMESPACE}/done", on_done, outside)
    node.create_subscription(Reward, f"/{NAMESPACE}/reward", on_reward, outside)
    node.create_subscription(Action, f"/{NAMESPACE}/action", on_action, outside)
    try:
        end_warmup = time.monotonic() + warmup
        while time.monotonic() < end_warmup:
            executor.spin_once(timeout_sec=0.05)
        if proc.poll() is not None:
            raise SystemExit(f"the launcher exited during the warm-up:\n{Path(log.name).read_text()[-3000:]}")
        counting["on"], start = True, time.monotonic()
        while time.monotonic() - start < seconds:
            executor.spin_once(timeout_sec=0.05)
        elapsed = time.monotonic() - start
        counting["on"] = False
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    text = Path(log.name).read_text()
    log.close()
    elsewhere.cleanup()
    return {
        "warmup_s": warmup,
        "seconds": elapsed,
        "imagined_steps": len(steps),
        "steps_per_s": len(steps) / elapsed,
        "actions": actions[0],
        "hold_actions": holds[0],
        "rewarded_steps": len(steps & rewarded),
        "reward_share": len(steps & rewarded) / len(steps) if steps else None,
        "launcher_warnings": sorted({line.strip()[-160:] for line in text.splitlines() if "WARN" in line})[:20],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--world-model", required=True, help="train-wm run folder (world_model.safetensors + split.json)"
    )
    parser.add_argument("--launcher", choices=("ros2", "roboscape-r"), default="ros2")
    parser.add_argument("--seconds", type=float, default=60.0, help="counted seconds of each measurement")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds the launched graph runs before counting")
    parser.add_argument("--domain", type=int, default=150 + os.getpid() % 60, help="ROS_DOMAIN_ID of the graph")
    parser.add_argument("--output", default="", help="also write the JSON here (e.g. docs/results/...)")
    parser.add_argument("extra", nargs="*", help="more launch arguments (ros2: name:=value; roboscape-r: key=value)")
    args = parser.parse_args()
    run = Path(args.world_model).resolve()
    checkpoint = run / "world_model.safetensors" if run.is_dir() else run
    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain), PYTHONUNBUFFERED="1")
    env.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")  # as the launch files set it
    os.environ.update(ROS_DOMAIN_ID=env["ROS_DOMAIN_ID"], FASTDDS_BUILTIN_TRANSPORTS=env["FASTDDS_BUILTIN_TRANSPORTS"])
    cmd = launch_command(args.launcher, run, args.extra)
    launched = launched_rate(cmd, env, args.domain, args.warmup, args.seconds)
    in_process = in_process_rate(checkpoint, args.seconds)
    report = publish(
        "bench_launch_imagination",
        {
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
            "command": " ".join(Path(c).name if c == sys.executable else c for c in cmd).replace(str(run), run.name),
            "world_model": run.name,
            "launched": launched,
            "in_process": in_process,
            "launched_over_in_process": launched["steps_per_s"] / in_process["steps_per_s"],
        },
    )
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
