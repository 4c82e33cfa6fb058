"""Wall time of one train-wm stage in one process and under `torchrun --nproc_per_node 2` (DDP, gloo).

The tokenizer stage of a world-model preset (default `cpu`, 64x64 frames) trains for a fixed number of
steps at the same global batch on bench_loader's synthetic camera-like dataset, as
    python -m roboscape_r_ros.cli train-wm ... threads=T                  (1 process, T threads)
    torchrun --standalone --nproc_per_node 2 -m roboscape_r_ros.cli ...   (2 ranks, 1 thread each)
`stage_s` is the stage's training time as train-wm records it (progress.json), `command_s` the whole
command (imports, process start, rendezvous, data loading included). On a 2-core machine two ranks
share the cores one process would use: the point is that DDP runs, not that it is faster here.

    python bench/bench_ddp.py [--preset cpu] [--steps 30]    # prints JSON, also written to bench/results/
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
from bench_loader import EPISODES, SIZE, camera_like_episode, write_dataset
from bench_results import publish

from roboscape_r_ros.commands.train_wm import TrainWMConfig
from roboscape_r_ros.config import load_config

REPO = Path(__file__).resolve().parents[1]


def camera_like_dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    return write_dataset(root, [camera_like_episode(i, rng) for i in range(EPISODES)])


def train(launcher: list[str], args: list[str], run: Path, threads: int) -> dict[str, float]:
    """One tokenizer-stage run of train-wm; its stage time and the command's wall time."""
    start = time.perf_counter()
    subprocess.run(
        [*launcher, "roboscape_r_ros.cli", *args, f"run={run}", f"threads={threads}"],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
        check=True,
        capture_output=True,
    )
    command_s = time.perf_counter() - start
    stage_s = json.loads((run / "progress.json").read_text())["seconds"]["tokenizer"]
    return {"stage_s": round(stage_s, 2), "command_s": round(command_s, 2)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="cpu", help="train_wm preset whose tokenizer stage is timed")
    parser.add_argument("--steps", type=int, default=30, help="tokenizer steps")
    opts = parser.parse_args()
    one = [sys.executable, "-m"]
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    with tempfile.TemporaryDirectory() as tmp:
        dataset = camera_like_dataset(Path(tmp) / "dataset")
        args = [
            "train-wm",
            "--preset",
            opts.preset,
            f"dataset={dataset}",
            "progress=false",
            f"model.image_size={SIZE}",
            f"model.train.tokenizer_steps={opts.steps}",
            "model.train.action_steps=0",
            "model.train.goal_steps=0",
            "media_examples=1",
        ]
        runs = {
            "1 process, 1 thread": train(one, args, Path(tmp) / "one_1", threads=1),
            "1 process, 2 threads": train(one, args, Path(tmp) / "one_2", threads=2),
            "2 processes (DDP, gloo), 1 thread each": train(two, args, Path(tmp) / "two", threads=1),
        }
    batch = load_config(TrainWMConfig, "train_wm", opts.preset, []).model.train.batch_size
    ddp, single = runs["2 processes (DDP, gloo), 1 thread each"], runs["1 process, 2 threads"]
    report = {
        "bench": "ddp",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "stage": f"train-wm --preset {opts.preset}: tokenizer stage, {opts.steps} steps, global batch {batch}",
        "runs": runs,
        "steps_per_s": {name: round(opts.steps / run["stage_s"], 2) for name, run in runs.items()},
        "ddp_stage_time_vs_1_process_2_threads": round(ddp["stage_s"] / single["stage_s"], 2),
    }
    return publish("bench_ddp", report)


if __name__ == "__main__":
    main()
