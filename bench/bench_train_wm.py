"""train-wm's steps a second in float32 and under bf16 autocast (`model.train.cpu_amp`), side by side in one run.

Each precision runs in its own fresh process: the headline recipe's model (world_model preset `cpu` with
changed_token_weight 4, 64x64 frames, 4-D actions, batch 16) trains its tokenizer stage and then its action
stage through world_model/train.py's own loops (AdamW, clipping, the autocast train-wm applies), on batches
drawn from an in-memory store of random frames, token ids and actions of the headline dataset's size. Each
stage is timed over about 1.25 --seconds (its step count set from 5 + 10 warm-up steps). Quality is not measured
here: train the headline model with and without the option and compare evaluate-wm (docs/results/speed_cpu.md).

    python bench/bench_train_wm.py --seconds 40            # JSON: stdout and bench/results/bench_train_wm.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from bench_results import publish

PRECISIONS = ("float32", "bfloat16")
DATASET_FRAMES = 12_000  # the headline dataset: 120 episodes of up to ~150 frames
HEADLINE = ["image_size=64", "action_dim=4", "dynamics.changed_token_weight=4.0"]


def batches(cfg, batch_size: int, seed: int = 0):
    """Loader-shaped batches (frames, own token ids, actions, done) of random windows of a random store."""
    import numpy as np

    rng = np.random.default_rng(seed)
    T, S, A = cfg.context_length, cfg.image_size, cfg.action_dim
    frames = rng.integers(0, 256, (DATASET_FRAMES, S, S, 3), dtype=np.uint8)
    tokens = rng.integers(0, 1000, (DATASET_FRAMES, (S // 8) ** 2)).astype(np.int64)
    actions = rng.uniform(-1, 1, (DATASET_FRAMES, A)).astype(np.float32)
    while True:
        rows = rng.integers(0, DATASET_FRAMES - T, batch_size)[:, None] + np.arange(T)
        yield {
            "frames": frames[rows],
            "tokens": tokens[rows],
            "actions": actions[rows],
            "done": rng.uniform(0, 1, (batch_size, T)).astype(np.float32),
        }


def case(precision: str, seconds: float, threads: int) -> dict:
    import torch

    from roboscape_r_ros.config import load_config
    from roboscape_r_ros.world_model import WorldModel, WorldModelConfig, train_action_model, train_tokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_config(WorldModelConfig, "world_model", "cpu", [*HEADLINE, f"train.cpu_amp={precision == 'bfloat16'}"])
    model = WorldModel(cfg)
    out = {}
    for stage, train in (("tokenizer", train_tokenizer), ("action", train_action_model)):
        data = batches(cfg, cfg.train.batch_size)
        train(model, data, steps=5, progress=False)  # warm-up: first-call costs
        start = time.perf_counter()
        train(model, data, steps=10, progress=False)  # the step count that fills `seconds`
        steps = max(10, round(1.25 * seconds / ((time.perf_counter() - start) / 10)))
        start = time.perf_counter()
        train(model, data, steps=steps, progress=False)  # one stage run of `steps`, as train-wm runs it
        elapsed = time.perf_counter() - start
        out[stage] = {"steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40.0, help="timed seconds per stage and precision")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (train-wm threads=2 on this machine)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case(args.case, args.seconds, args.threads)))
        return
    results = {}
    for precision in PRECISIONS:
        cmd = [sys.executable, __file__, "--case", precision, "--seconds", str(args.seconds)]
        done = subprocess.run(cmd + ["--threads", str(args.threads)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{precision} failed:\n{done.stderr[-3000:]}")
        results[precision] = json.loads(done.stdout.strip().splitlines()[-1])
    publish(
        "bench_train_wm",
        {
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "threads": args.threads},
            "model": "world_model preset cpu, " + " ".join(HEADLINE) + ", batch 16, random weights",
            "precisions": results,
            "bfloat16_over_float32": {
                stage: results["bfloat16"][stage]["steps_per_s"] / results["float32"][stage]["steps_per_s"]
                for stage in ("tokenizer", "action")
            },
        },
    )


if __name__ == "__main__":
    main()
