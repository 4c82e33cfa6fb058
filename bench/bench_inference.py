"""Inference latency: torch vs ONNX Runtime on this machine, in one run, with their parity, for the
deployed policy and for the dreamer's world-model step.

policy   rl.policy.ImagePolicy at the demo's size (64x64 frames, convs 32-64-64, 256 hidden, 4 actions),
         exported with `roboscape-r export`'s code; one call = the mean action of a batch of frames.
dreamer  the demo's world model (train-wm's `cpu` preset: 64x64 frames, 8x8 tokens, 4 cached frames,
         dynamics width 96, 4 blocks, 2 MaskGIT passes), exported with `roboscape-r export world_model=`'s
         code, run through runtime.inference.runners's world-model runners as the dreamer runs them:
           imagine_step       one world-model step from a state (dynamics step + decode): mode imagine, per action
           shadow_prediction  encode the 4 latest real frames, the context pass, then one step + decode:
                              mode shadow, per prediction (tokenizer encode + dynamics step + decode)
The dreamer also runs as torch under bf16 autocast (torch_bf16: world_model.InferenceConfig precision, the lever
of faster imagination at batch 64): onnx_speedup_p50_over_fastest_torch_* divides the faster torch p50 by ONNX's.
Random weights and seeded random frames (the cost does not depend on them); parity is measured on the
timed inputs: the policy's actions, the dreamer's predicted frames (intensity levels) and done probabilities.
Latency per call, p50 and p99 over --calls (policy) / --wm-calls (dreamer) calls after 10 warm-up calls, at
batch 1 (one robot) and 16. Both runtimes in this process with the same thread count (--threads, default 1:
a node shares the machine).

    python bench/bench_inference.py [--threads 1] [--calls 300] [--wm-calls 100]   # JSON: stdout, bench/results/
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

from roboscape_r_ros.config import load_config
from roboscape_r_ros.export.policy import export_policy
from roboscape_r_ros.export.world_model import ONNX_FOLDER, export_world_model
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig
from roboscape_r_ros.runtime.inference.runners import open_policy_runner, open_world_model_runner
from roboscape_r_ros.world_model import WorldModel, WorldModelConfig
from roboscape_r_ros.world_model.config import InferenceConfig


def latencies_ms(call, calls: int) -> np.ndarray:
    for _ in range(10):  # warm-up
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return np.array(times)


def timed(call, calls: int, providers: list[str]) -> dict:
    ms = latencies_ms(call, calls)
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "providers": providers,
    }


def speedups(cases: dict, names: list[str], batches: list[int]) -> dict:
    """torch p50 / ONNX Runtime p50 of the cases '<runtime>_<name>batch<b>' (a name ends with '_' or is empty)."""
    return {
        f"onnx_speedup_p50_{name}batch{b}": round(
            cases[f"torch_{name}batch{b}"]["p50_ms"] / cases[f"onnx_{name}batch{b}"]["p50_ms"], 2
        )
        for name in names
        for b in batches
    }


def bench_policy(folder: Path, args) -> dict:
    torch.manual_seed(0)
    cfg = PolicyConfig(image_size=64)
    checkpoint = ImagePolicy(cfg).save(folder / "policy.safetensors")
    export = export_policy(checkpoint, folder / "policy.onnx")
    runners = {"torch": open_policy_runner(checkpoint), "onnx": open_policy_runner(export.path, threads=args.threads)}
    rng = np.random.default_rng(0)
    cases, parity = {}, 0.0
    for batch in args.batches:
        image = rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)
        goal = rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)
        actions = {name: runner.mean(image, goal) for name, runner in runners.items()}
        parity = max(parity, float(np.abs(actions["onnx"] - actions["torch"]).max()))
        for name, runner in runners.items():
            call = lambda r=runner, i=image, g=goal: r.mean(i, g)  # noqa: E731
            cases[f"{name}_batch{batch}"] = timed(call, args.calls, runner.providers)
    return {
        "model": {"image_size": 64, "channels": cfg.channels, "hidden": cfg.hidden, "action_dim": cfg.action_dim},
        "export_parity_max_abs_diff": export.max_abs_diff,
        "parity_max_abs_diff": parity,
        "cases": cases,
        **speedups(cases, [""], args.batches),
    }


def bench_dreamer(folder: Path, args) -> dict:
    cfg = load_config(WorldModelConfig, "world_model", "cpu", [])
    torch.manual_seed(0)
    checkpoint = folder / "world_model.safetensors"
    WorldModel(cfg).save(checkpoint)
    export = export_world_model(checkpoint, folder / ONNX_FOLDER, perceptual_resolution=None)
    runners = {
        "torch": open_world_model_runner(checkpoint, "torch"),
        "torch_bf16": open_world_model_runner(checkpoint, "torch"),
        "onnx": open_world_model_runner(checkpoint, "onnx", threads=args.threads),
    }
    runners["torch_bf16"].wm.configure(InferenceConfig(precision="bfloat16"))  # this machine's fastest torch lever
    C, A, S = cfg.context_length - 1, cfg.action_dim, cfg.image_size
    rng = np.random.default_rng(1)
    cases, frame_diff, done_diff = {}, 0.0, 0.0
    for batch in args.batches:
        frames = rng.integers(0, 256, (batch, C, S, S, 3), dtype=np.uint8)
        context_actions = rng.uniform(-1, 1, (batch, C - 1, A)).astype(np.float32)
        action = rng.uniform(-1, 1, (batch, A)).astype(np.float32)
        for name, runner in runners.items():
            state = runner.encode_context(frames, context_actions)
            _, predicted, done = runner.step(state, action)
            if name == "torch":
                expected = (predicted.astype(np.int64), done)
            elif name == "onnx":
                frame_diff = max(frame_diff, float(np.abs(predicted - expected[0]).max()))
                done_diff = max(done_diff, float(np.abs(done - expected[1]).max()))

            def imagine(r=runner, s=state, a=action):
                r.step(s, a)

            def shadow(r=runner, f=frames, c=context_actions, a=action):
                r.step(r.encode_context(f, c), a)

            cases[f"{name}_imagine_step_batch{batch}"] = timed(imagine, args.wm_calls, runner.providers)
            cases[f"{name}_shadow_prediction_batch{batch}"] = timed(shadow, args.wm_calls, runner.providers)
    return {
        "model": {
            "preset": "world_model/cpu",
            "image_size": S,
            "tokens_per_frame": (S // 8) ** 2,
            "context_frames": C,
            "dynamics": {
                "dim": cfg.dynamics.dim,
                "layers": cfg.dynamics.layers,
                "decode_steps": cfg.dynamics.decode_steps,
            },
            "tokenizer_channels": cfg.tokenizer.channels,
        },
        "export_parity_max_abs_diff": export.max_abs_diff,
        "parity_predicted_frames_max_abs_diff_levels": frame_diff,
        "parity_done_probability_max_abs_diff": done_diff,
        "cases": cases,
        **speedups(cases, ["imagine_step_", "shadow_prediction_"], args.batches),
        **{
            f"onnx_speedup_p50_over_fastest_torch_imagine_step_batch{b}": round(
                min(cases[f"{t}_imagine_step_batch{b}"]["p50_ms"] for t in ("torch", "torch_bf16"))
                / cases[f"onnx_imagine_step_batch{b}"]["p50_ms"],
                2,
            )
            for b in args.batches
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--wm-calls", type=int, default=100)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        policy = bench_policy(Path(tmp), args)
        dreamer = bench_dreamer(Path(tmp), args)
    publish(
        "bench_inference",
        {
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
            "threads": args.threads,
            "calls": {"policy": args.calls, "dreamer": args.wm_calls},
            "policy": policy,
            "dreamer": dreamer,
        },
    )


if __name__ == "__main__":
    main()
