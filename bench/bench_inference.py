"""Policy inference latency: torch vs ONNX Runtime on this machine, in one run, with their parity.

The deployed policy (rl.policy.ImagePolicy at the demo's size: 64x64 frames, convs 32-64-64, 256
hidden, 4 actions; random weights: the cost does not depend on them) is exported with
`roboscape-r export`'s code, then both runtimes compute its mean action on the same frames:
    parity      max |onnxruntime - torch| over the timed batches
    latency     per call, p50 and p99 over --calls calls after a warm-up, at batch 1 (one robot) and 16
Both in this process with the same thread count (--threads, default 1: a node shares the machine).

    python bench/bench_inference.py [--threads 1] [--calls 300]     # JSON on stdout and in bench/results/
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_results import publish

from roboscape_r_ros.export.policy import export_policy
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig
from roboscape_r_ros.runtime.inference import open_policy_runner


def latencies_ms(call, calls: int) -> np.ndarray:
    for _ in range(10):  # warm-up
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return np.array(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    torch.manual_seed(0)
    cfg = PolicyConfig(image_size=64)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = ImagePolicy(cfg).save(Path(tmp) / "policy.safetensors")
        export = export_policy(checkpoint, Path(tmp) / "policy.onnx")
        runners = {
            "torch": open_policy_runner(checkpoint),
            "onnx": open_policy_runner(export.path, threads=args.threads),
        }

        rng = np.random.default_rng(0)
        cases, parity = {}, 0.0
        for batch in args.batches:
            image = rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)
            goal = rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)
            parity = max(
                parity, float(np.abs(runners["onnx"].mean(image, goal) - runners["torch"].mean(image, goal)).max())
            )
            for name, runner in runners.items():
                ms = latencies_ms(lambda r=runner, i=image, g=goal: r.mean(i, g), args.calls)
                cases[f"{name}_batch{batch}"] = {
                    "p50_ms": round(float(np.percentile(ms, 50)), 4),
                    "p99_ms": round(float(np.percentile(ms, 99)), 4),
                    "providers": runner.providers,
                }
        ratios = {
            f"onnx_speedup_p50_batch{b}": round(
                cases[f"torch_batch{b}"]["p50_ms"] / cases[f"onnx_batch{b}"]["p50_ms"], 2
            )
            for b in args.batches
        }
    publish(
        "bench_inference",
        {
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
            "threads": args.threads,
            "calls": args.calls,
            "policy": {"image_size": 64, "channels": cfg.channels, "hidden": cfg.hidden, "action_dim": cfg.action_dim},
            "export_parity_max_abs_diff": export.max_abs_diff,
            "parity_max_abs_diff": parity,
            "cases": cases,
            **ratios,
        },
    )


if __name__ == "__main__":
    main()
