"""`roboscape-r evaluate` with one worker and with several: wall time, speed-up, same episodes or not.

The same evaluation (an untrained policy and random actions, so every episode runs to the step cap,
the slowest case; reach-v3 and push-v3 at 64x64; in-domain, lighting and out-of-range positions)
runs once per worker count in this process, each from scratch (workers > 1 includes starting the
spawned processes and loading the policy in each). This process runs torch on ``--threads`` threads
(default 1, as each worker does and as the demo presets run every stage; with more, beside another
busy job, its threads spin against it). ``identical`` compares the per-episode records (actor, task,
scene, seed, episode, reset seed, success, steps) with those of the first count. Another job on the
machine slows the runs unevenly: the load averages before and after are recorded.

    python bench/bench_evaluate.py                          # workers 1 and 2, ~2 min on 2 idle cores
    python bench/bench_evaluate.py --workers 1,4 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from bench_results import publish

from roboscape_r_ros.envs.metaworld_env import EnvConfig
from roboscape_r_ros.envs.scene import SceneVariation
from roboscape_r_ros.rl.evaluate import EvaluateConfig, SceneSpec, evaluate
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig


def bench_config(args: argparse.Namespace, policy: Path) -> EvaluateConfig:
    env = EnvConfig(tasks=args.tasks.split(","), resolution=args.resolution, max_steps=args.max_steps)
    scenes = [SceneSpec("lighting", SceneVariation(light_scale=0.5)), SceneSpec("positions-x+", outside="x+")]
    return EvaluateConfig(
        policies=[f"untrained={policy}"],
        env=env,
        ood_scenes=scenes,
        seeds=[int(s) for s in args.seeds.split(",")],
        episodes_per_seed=args.episodes,
    )


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2", help="worker counts to time, comma-separated")
    parser.add_argument("--tasks", default="reach-v3,push-v3")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--episodes", type=int, default=2, help="episodes per task, scene and seed")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=100, help="step cap (every actor here runs to it)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process (workers: 1 each)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        policy = ImagePolicy(PolicyConfig(image_size=args.resolution)).save(Path(tmp) / "untrained.safetensors")
        cfg = bench_config(args, policy)
        for workers in (int(w) for w in args.workers.split(",")):
            start = time.perf_counter()
            evaluation = evaluate(dataclasses.replace(cfg, workers=workers), progress=False)
            runs.append((workers, time.perf_counter() - start, evaluation.episodes))
    base_workers, base_s, base_episodes = runs[0]
    report = {
        "bench": "evaluate",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
        "threads": args.threads,
        "load_average_1_5_15_min": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "evaluation": {
            "tasks": cfg.env.tasks,
            "scenes": ["in-domain"] + [s.name for s in cfg.ood_scenes],
            "seeds": cfg.seeds,
            "episodes_per_seed": cfg.episodes_per_seed,
            "resolution": cfg.env.resolution,
            "max_steps": cfg.env.max_steps,
            "actors": ["untrained policy", "random"],
            "episode_records": len(base_episodes),
        },
        "identical": f"per-episode records equal to those with workers={base_workers}",
        "runs": [
            {
                "workers": workers,
                "wall_s": round(wall_s, 2),
                "speedup": round(base_s / wall_s, 2),
                "identical": episodes == base_episodes,
            }
            for workers, wall_s, episodes in runs
        ],
    }
    return publish("bench_evaluate", report)


if __name__ == "__main__":
    main()
