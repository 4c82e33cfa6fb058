"""Imagined environment steps per second beside the rendered Meta-World simulator, in one run.

Each case runs in its own fresh process (so its peak resident memory is its own):
  sim        PixelMetaWorldEnv reach-v3, 64x64 frames, random actions, one process on one core
  <preset>   WorldModel (random weights, or a run's trained ones with --world-model) imagining a batch of B
             environments at 64x64: encode a real-sized context once, then step with random actions
             (MaskGIT decoding + KV cache + frame decode), B environment steps per model step;
             then the same loop with the endogenous reward r = (1 - D(frame, goal)) + 10 [done >= 0.9]
             computed in it: D = effnet perceptual distance, batched, the goal embedding cached once.
             Once per --inference setting (world_model.InferenceConfig overrides: MaskGIT iterations,
             precision), the reward under the same precision, as the imagination env runs it.

Ratios are imagined env-steps/s over the simulator's rendered steps/s. One world-model step stands
for `frame_skip` control steps (4 in the small preset): `control_step_ratio` counts that in.
Peak memory: ru_maxrss of the case's process (after the loop without reward, then with it).

    python bench/bench_imagination.py                      # tiny + small, batches 1, 16, 64
    python bench/bench_imagination.py --presets cpu --batches 64 --seconds 5
    python bench/bench_imagination.py --world-model outputs/runs/wm3_cpu --batches 64   # trained weights
    python bench/bench_imagination.py --world-model outputs/runs/wm3_w4 --batches 64 --reward-resolutions 64 \
        --seconds 30 --inference "" --inference decode_steps=1 --inference precision=bfloat16 \
        --inference decode_steps=1,precision=bfloat16                   # each speed lever, side by side
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "bench_imagination.json"
SIZE = 64


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed(step, seconds: float, min_steps: int = 3) -> tuple[int, float]:
    step()  # warm-up
    count, start = 0, time.perf_counter()
    while count < min_steps or time.perf_counter() - start < seconds:
        step()
        count += 1
    return count, time.perf_counter() - start


def case_sim(seconds: float) -> dict:
    import numpy as np

    from roboscape_r_ros.envs.metaworld_env import EnvConfig, PixelMetaWorldEnv

    base = peak_rss_mb()
    env = PixelMetaWorldEnv("reach-v3", EnvConfig(tasks=["reach-v3"], resolution=SIZE))
    rng = np.random.default_rng(0)
    env.reset(seed=0)

    def step():
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        if terminated or truncated:
            env.reset(seed=int(rng.integers(2**31)))

    count, elapsed = timed(step, seconds)
    env.close()
    return {
        "steps_per_s": count / elapsed,
        "steps": count,
        "seconds": elapsed,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_imports_mb": base,
    }


def case_world_model(preset: str, batch: int, seconds: float, resolutions: list[int], inference: str) -> dict:
    import numpy as np
    import torch

    from roboscape_r_ros.config import load_config
    from roboscape_r_ros.perception.distance import PerceptionConfig, make_distance
    from roboscape_r_ros.world_model import WorldModel, WorldModelConfig
    from roboscape_r_ros.world_model.config import InferenceConfig

    base = peak_rss_mb()
    torch.manual_seed(0)
    if preset.endswith(".safetensors"):  # trained weights (--world-model)
        wm = WorldModel.from_checkpoint(preset).eval()
        cfg = wm.cfg
    else:
        cfg = load_config(WorldModelConfig, "world_model", preset, [f"image_size={SIZE}", "action_dim=4"])
        wm = WorldModel(cfg).eval()
    wm.configure(load_config(InferenceConfig, "", None, [o for o in inference.split(",") if o]))
    rng = np.random.default_rng(0)
    c = cfg.context_length - 1
    frames = rng.integers(0, 256, (batch, c, SIZE, SIZE, 3), dtype=np.uint8)
    state = wm.encode_context(frames, np.zeros((batch, c - 1, 4), np.float32))
    holder = {"state": state}

    def imagine():
        holder["state"], frame, done = wm.step(holder["state"], torch.rand(batch, 4) * 2 - 1)
        return frame, done

    with torch.inference_mode():
        count, elapsed = timed(imagine, seconds)
    out = {
        "preset": preset,
        "inference": {"decode_steps": cfg.dynamics.decode_steps, "precision": wm.precision},
        "batch": batch,
        "frame_skip": cfg.frame_skip,
        "params_m": sum(p.numel() for p in wm.parameters()) / 1e6,
        "steps_per_s": batch * count / elapsed,
        "model_steps": count,
        "seconds": elapsed,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_imports_mb": base,
        "with_reward": {},
    }
    goal = rng.integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8)
    for resolution in resolutions:
        distance = make_distance(PerceptionConfig(backend="effnet", resolution=resolution))
        with torch.inference_mode(), wm.autocast():
            goal_embedding = distance.embed(goal)  # cached: the goal is fixed for the episode

        def rewarded(distance=distance, goal_embedding=goal_embedding):
            frame, done = imagine()
            with wm.autocast():
                d = distance.compare(distance.embed(frame), goal_embedding)
            return (1 - d.float()) + 10.0 * (done >= cfg.done_threshold).float()

        with torch.inference_mode():
            count, elapsed = timed(rewarded, seconds)
        out["with_reward"][f"effnet@{resolution}"] = {
            "steps_per_s": batch * count / elapsed,
            "model_steps": count,
            "seconds": elapsed,
            "peak_rss_mb": peak_rss_mb(),
        }
    return out


def run_case(case: list[str], args: argparse.Namespace, inference: str = "") -> dict:
    """One measurement in a fresh process, with the options that shape it (its time, threads, reward sizes,
    inference setting)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, __file__, "--case", *case, "--threads", str(args.threads), "--seconds", str(args.seconds)]
    cmd += ["--reward-resolutions", args.reward_resolutions, "--inference", inference]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,small", help="world_model presets, comma-separated")
    parser.add_argument(
        "--world-model",
        default="",
        help="a train-wm run folder: its trained weights instead of the presets' random ones",
    )
    parser.add_argument("--batches", default="1,16,64", help="imagined environments per model step")
    parser.add_argument("--seconds", type=float, default=4.0, help="minimum timed seconds per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: like the one sim process)")
    parser.add_argument(
        "--reward-resolutions",
        default="128,64",
        help="effnet input sides of the reward (128 = the reward's default; 64 = no upsampling)",
    )
    parser.add_argument(
        "--inference",
        action="append",
        help="world_model.InferenceConfig overrides of one setting, comma-separated (e.g. decode_steps=1,"
        "precision=bfloat16); repeat for several, each measured in turn ('' = as trained, the default)",
    )
    parser.add_argument("--case", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(RESULTS), help="JSON file written besides stdout ('' = none)")
    args = parser.parse_args(argv)
    args.inference = args.inference or [""]
    resolutions = [int(r) for r in args.reward_resolutions.split(",") if r]
    if args.case is not None:  # a child process: one measurement, JSON on the last stdout line
        import torch

        torch.set_num_threads(args.threads)
        if args.case[0] == "sim":
            result = case_sim(args.seconds)
        else:
            result = case_world_model(args.case[0], int(args.case[1]), args.seconds, resolutions, args.inference[0])
        print(json.dumps(result))
        return

    start = time.perf_counter()
    sim = run_case(["sim"], args)
    rows = []
    models = [str(Path(args.world_model) / "world_model.safetensors")] if args.world_model else args.presets.split(",")
    for preset in models:
        label = Path(preset).parent.name if args.world_model else preset
        for batch, inference in ((int(b), i) for b in args.batches.split(",") for i in args.inference):
            r = run_case([preset, str(batch)], args, inference)
            r["ratio_to_sim"] = r["steps_per_s"] / sim["steps_per_s"]
            r["control_step_ratio"] = r["ratio_to_sim"] * r["frame_skip"]
            for reward in r["with_reward"].values():
                reward["ratio_to_sim"] = reward["steps_per_s"] / sim["steps_per_s"]
                reward["control_step_ratio"] = reward["ratio_to_sim"] * r["frame_skip"]
            rows.append(r)
            print(
                f"{label:>6} batch {batch:>3} {inference or 'as trained':>36}: "
                f"{r['steps_per_s']:8.1f} imagined steps/s "
                f"({r['ratio_to_sim']:.2f}x sim), with reward "
                + ", ".join(
                    f"{k} {v['steps_per_s']:.1f}/s ({v['ratio_to_sim']:.2f}x)" for k, v in r["with_reward"].items()
                )
                + f"; peak RSS {max(v['peak_rss_mb'] for v in r['with_reward'].values()):.0f} MB",
                file=sys.stderr,
            )
    import torch

    result = {
        "benchmark": "bench_imagination",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": args.threads,
            "load_average_1min_at_end": os.getloadavg()[0],
        },
        "frame_size": SIZE,
        "simulator": {"env": "PixelMetaWorldEnv reach-v3 (rendered, random actions)", **sim},
        "world_model": rows,
        "reward": "r = (1 - D(frame, goal)) + 10 [done >= 0.9], D = effnet (EfficientNet-Lite0, uncalibrated), "
        "goal embedding cached",
        "wall_seconds": time.perf_counter() - start,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
