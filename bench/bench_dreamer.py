"""Dreamer step rate: DreamSession.step in-process beside the same steps over DDS, in one run.

The tiny world-model preset at 64x64 (random weights: speed does not depend on them), 4-D actions,
one imagined environment, one world-model step per action:
    in_process_1_thread / _2_threads   DreamSession.step with torch at 1 / 2 threads
    in_process_with_reward             the same plus RewardSession (effnet distance, done from the
                                       dreamer) per step: what dreamer + reward_publisher compute
    dds_loop                           the dreamer node in its own process (1 torch thread); this
                                       process plays the policy: it answers every observation with
                                       an Action at once; steps/s counted from the dreamer's done
Ratios: dds_loop / in_process_1_thread (what the topic loop keeps of the model's own rate).

    python bench/bench_dreamer.py [--seconds 5]      # JSON on stdout and in bench/results/
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_results import publish

REPO = Path(__file__).resolve().parents[1]
SIZE, ACTIONS = 64, ["dx", "dy", "dz", "gripper"]


def make_run(folder: Path) -> Path:
    """A run folder: a random tiny 64x64 world model + split.json over 4 noise episodes."""
    from roboscape_r_ros.config import load_config
    from roboscape_r_ros.data.lerobot import DatasetWriter, Episode
    from roboscape_r_ros.world_model import WorldModel, WorldModelConfig

    rng = np.random.default_rng(0)
    with DatasetWriter(
        folder / "data", fps=80, camera="noise", image_shape=(SIZE, SIZE, 3), action_names=ACTIONS, state_names=ACTIONS
    ) as writer:
        for _ in range(4):
            n = 12
            writer.add_episode(
                Episode(
                    frames=rng.integers(0, 256, (n, SIZE, SIZE, 3), np.uint8),
                    actions=rng.uniform(-1, 1, (n, 4)).astype(np.float32),
                    states=np.zeros((n, 4), np.float32),
                    done=np.zeros(n, np.float32),
                    subtask_index=np.zeros(n, np.int64),
                    task="reach-v3",
                    instruction="Reach the goal.",
                    success=False,
                    kind="random",
                )
            )
    torch.manual_seed(0)
    run = folder / "run"
    run.mkdir()
    WorldModel(load_config(WorldModelConfig, "world_model", "tiny", [f"image_size={SIZE}", "action_dim=4"])).save(
        run / "world_model.safetensors"
    )
    (run / "split.json").write_text(
        json.dumps(
            {"dataset": str(folder / "data"), "num_episodes": 4, "num_frames": 48, "train": [0, 1], "held_out": [2, 3]}
        )
    )
    return run


def in_process(run: Path, seconds: float, threads: int, reward: bool) -> dict:
    from roboscape_r_ros.imagination.reward import RewardConfig
    from roboscape_r_ros.runtime.sessions.dream_session import ContextPool, DreamSession, load_world_model
    from roboscape_r_ros.runtime.sessions.reward_session import RewardSession

    torch.set_num_threads(threads)
    wm, info = load_world_model(run)
    session = DreamSession(wm, ContextPool(wm, info), max_steps=1_000_000, done_threshold=1.0)
    rewards = RewardSession(RewardConfig(), wm) if reward else None
    first = session.reset()
    if rewards is not None:
        rewards.set_goal(first.image)
    rng = np.random.default_rng(0)
    session.step(rng.uniform(-1, 1, 4))  # warm-up
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        frame = session.step(rng.uniform(-1, 1, 4))
        if rewards is not None:
            rewards(frame.image, frame.done_probability)
        steps += 1
    elapsed = time.perf_counter() - start
    return {
        "steps": steps,
        "steps_per_s": round(steps / elapsed, 1),
        "ms_per_step": round(1e3 * elapsed / steps, 2),
        "torch_threads": threads,
    }


def dds_loop(run: Path, seconds: float) -> dict:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from roboscape_r_ros.msg import Action, Reward

    domain = 100 + os.getpid() % 60
    # Both sides on the launch files' transport (a LARGE_DATA publisher and a default-transport
    # subscriber exchanged no image here).
    os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "roboscape_r_ros.nodes.dreamer",
            "--ros-args",
            "-p",
            f"world_model:={run}",
            "-p",
            "max_steps:=1000000",
            "-p",
            "done_threshold:=1.0",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("bench_policy", context=context)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Action, "action", reliable)
    steps: list[tuple[float, int]] = []

    def answer(msg: Image) -> None:
        pub.publish(
            Action(
                header=msg.header,
                names=ACTIONS,
                units=["m", "m", "m", "1"],
                values=[0.5, 0.0, 0.0, 0.0],
                scale=[0.01, 0.01, 0.01, 1.0],
                mode=Action.MODE_DELTA,
            )
        )

    node.create_subscription(Image, "observation", answer, qos_profile_sensor_data)
    node.create_subscription(Reward, "done", lambda d: steps.append((time.perf_counter(), d.step)), reliable)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline and not (steps and steps[-1][1] >= 20):  # start-up and warm-up
            executor.spin_once(timeout_sec=0.05)
        start, first = time.perf_counter(), steps[-1][1] if steps else 0
        while time.perf_counter() - start < seconds:
            executor.spin_once(timeout_sec=0.05)
        done = steps[-1][1] - first if steps else 0
        return {
            "steps": done,
            "steps_per_s": round(done / (time.perf_counter() - start), 1),
            "dreamer_torch_threads": 1,
        }
    finally:
        proc.send_signal(2)
        proc.wait(timeout=20)
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case (after warm-up)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp))
        cases = {
            "in_process_1_thread": in_process(run, opts.seconds, 1, reward=False),
            "in_process_2_threads": in_process(run, opts.seconds, 2, reward=False),
            "in_process_with_reward": in_process(run, opts.seconds, 1, reward=True),
            "dds_loop": dds_loop(run, opts.seconds),
        }
    base = cases["in_process_1_thread"]["steps_per_s"]
    report = {
        "bench": "dreamer",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}",
        "world_model": f"tiny preset, {SIZE}x{SIZE}, 4-D actions, random weights, one imagined environment",
        "cases": cases,
        "ratios": {name: round(case["steps_per_s"] / base, 2) for name, case in cases.items()},
    }
    return publish("bench_dreamer", report)


if __name__ == "__main__":
    main()
