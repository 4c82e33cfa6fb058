"""The package's GPU benchmark: train-wm `base` for a fixed number of steps, then the trained model's
held-out quality, imagination speed and inference latency, in one run of at most ~8 minutes on one GPU.

    python bench/gpu_benchmark.py                  # on a GPU machine; JSON in bench/results/gpu_benchmark.json
    python bench/gpu_benchmark.py --dry-run        # every part at toy size on any device (tested in CI on a CPU)
    python bench/gpu_benchmark.py --compile        # the same with torch.compile'd training losses

Parts, each timed on the device torch picks (cuda when available):
  train_wm     `roboscape-r train-wm --preset base` (64x64 frames, 16-frame context, frame_skip 4, bf16
               autocast on CUDA, pinned-memory batches) on a synthetic dataset written first: the tests'
               square moved by its actions (test/helpers/wm_synthetic.py), upscaled to 64x64, with 100-frame
               failed and random episodes. Steps/s of the tokenizer and action stages and the peak
               memory (CUDA: torch.cuda.max_memory_allocated; CPU: the process's peak RSS).
  evaluate_wm  `roboscape-r evaluate-wm` on the run's held-out episodes: the 8-step PSNR gain over
               copy-last and dPSNR (true vs shuffled actions). On this synthetic data it says that the
               model follows its actions after the fixed steps; it is not comparable with Meta-World figures.
  imagination  ImaginationEnv on the trained model with the endogenous reward (EfficientNet-Lite0
               distance at 64 px to a goal image) at batch 256 and 1024, random actions: imagined
               env-steps/s (one env-step = one world-model step = frame_skip control steps).
  latency      p50/p99 per call at batch 1 and 16: the policy (ImagePolicy at 64x64) with torch on the
               device and with ONNX Runtime (the providers it really uses: CUDA only with onnxruntime-gpu
               installed), and the world model's step (dynamics + decode) with torch.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_inference import latencies_ms
from bench_results import publish

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from helpers.wm_synthetic import write_dataset  # noqa: E402  (the tests' synthetic dataset)
from roboscape_r_ros.commands.evaluate_wm import EvaluateWMConfig, run_evaluate_wm  # noqa: E402
from roboscape_r_ros.commands.train_wm import TrainWMConfig, run_train_wm  # noqa: E402
from roboscape_r_ros.config import load_config  # noqa: E402
from roboscape_r_ros.errors import RoboscapeError  # noqa: E402
from roboscape_r_ros.export.policy import export_policy  # noqa: E402
from roboscape_r_ros.imagination import ImaginationConfig, RewardConfig, make_imagination_env  # noqa: E402
from roboscape_r_ros.perception.distance import PerceptionConfig  # noqa: E402
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig  # noqa: E402
from roboscape_r_ros.runtime.inference.runners import open_policy_runner  # noqa: E402

FULL = {"preset": "base", "scale": 2, "per_kind": 6, "tokenizer_steps": 1000, "action_steps": 1000,
        "batches": [256, 1024], "seconds": 10.0, "calls": 200, "eval_preset": None}  # fmt: skip
DRY = {"preset": "tiny", "scale": 1, "per_kind": 2, "tokenizer_steps": 4, "action_steps": 4,
       "batches": [4, 8], "seconds": 0.5, "calls": 5, "eval_preset": "tiny"}  # fmt: skip


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_world_model(dataset: Path, run: Path, plan: dict, device: torch.device) -> dict:
    steps = {"tokenizer": plan["tokenizer_steps"], "action": plan["action_steps"]}
    overrides = [f"dataset={dataset}", f"run={run}", "progress=false", "media_every=0", "media_examples=1"]
    overrides += [f"model.train.{stage}_steps={n}" for stage, n in steps.items()] + ["model.train.goal_steps=0"]
    overrides += [f"model.train.checkpoint_every={max(steps.values())}", "held_out_fraction=0.2"]
    overrides += [f"model.train.compile={str(plan['compile']).lower()}"]
    cfg = load_config(TrainWMConfig, "train_wm", plan["preset"], overrides)
    reset_peak(device)
    result = run_train_wm(cfg)
    return {
        "preset": plan["preset"],
        "batch_size": cfg.model.train.batch_size,
        "amp_bf16": cfg.model.train.amp and device.type == "cuda",
        "compiled": cfg.model.train.compile,
        "steps": steps,
        "seconds": {stage: result.seconds[stage] for stage in steps},
        "steps_per_s": {stage: n / result.seconds[stage] for stage, n in steps.items()},
        "peak_memory_mb": peak_memory_mb(device),
    }


def evaluate_world_model(run: Path, plan: dict) -> dict:
    overrides = [f"run={run}", "progress=false", "horizons=[1,4,8]"]
    cfg = load_config(EvaluateWMConfig, "evaluate_wm", plan["eval_preset"], overrides)
    metrics = run_evaluate_wm(cfg).metrics
    horizons = metrics["open_loop"]["horizons"]
    h = max(int(k) for k in horizons)
    return {
        "horizon": h,
        "psnr_gain_db": horizons[h]["psnr_gain"],
        "dpsnr_db": horizons[h]["dpsnr"],
        "held_out_episodes": metrics["held_out_episodes"],
        "seconds": metrics["seconds"],
    }


def imagination_speed(run: Path, goal_png: Path, plan: dict, device: torch.device) -> dict:
    out = {}
    for batch in plan["batches"]:
        cfg = ImaginationConfig(
            world_model=str(run),
            episodes="all",
            goal="image",
            goal_image=str(goal_png),
            num_envs=batch,
            reward=RewardConfig(perception=PerceptionConfig(backend="effnet", resolution=64)),
        )
        env, _ = make_imagination_env(cfg, device)
        rng = torch.Generator(device=device).manual_seed(0)
        env.reset(seed=0)

        def step(env=env, batch=batch, rng=rng):
            env.step(torch.rand(batch, env.action_dim, generator=rng, device=device) * 2 - 1)

        step()  # warm-up
        sync(device)
        reset_peak(device)
        calls, start = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - start < plan["seconds"]:
            step()
            calls += 1
        sync(device)
        elapsed = time.perf_counter() - start
        out[f"batch{batch}"] = {
            "env_steps_per_s": batch * calls / elapsed,
            "steps": calls,
            "seconds": elapsed,
            "peak_memory_mb": peak_memory_mb(device),
        }
        env.close()
    return out


def percentiles(ms: np.ndarray) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4)}


def latency(run: Path, plan: dict, device: torch.device, tmp: Path) -> dict:
    from roboscape_r_ros.world_model import WorldModel

    torch.manual_seed(0)
    checkpoint = ImagePolicy(PolicyConfig(image_size=64)).save(tmp / "policy.safetensors")
    exported = export_policy(checkpoint, tmp / "policy.onnx")
    out: dict = {}
    try:
        onnx = open_policy_runner(exported.path, device=str(device))
    except RoboscapeError as err:  # a CPU-only onnxruntime build on a GPU machine: say so, time it on the CPU
        out["onnx_on_cpu_because"] = str(err)
        onnx = open_policy_runner(exported.path)
    runners = {"torch": open_policy_runner(checkpoint, device=str(device)), "onnx": onnx}
    out["policy_providers"] = {name: runner.providers for name, runner in runners.items()}
    wm = WorldModel.from_checkpoint(run / "world_model.safetensors", device=device).eval()
    rng = np.random.default_rng(0)
    for batch in (1, 16):
        image = rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)
        goal = rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)
        for name, runner in runners.items():
            ms = latencies_ms(lambda r=runner, i=image, g=goal: r.mean(i, g), plan["calls"])
            out[f"policy_{name}_batch{batch}"] = percentiles(ms)
        size, c = wm.cfg.image_size, wm.cfg.context_length - 1
        frames = rng.integers(0, 256, (batch, c, size, size, 3), dtype=np.uint8)
        state = wm.encode_context(frames, np.zeros((batch, c - 1, wm.cfg.action_dim), np.float32))
        actions = torch.zeros(batch, wm.cfg.action_dim, device=device)

        def wm_step(state=state, actions=actions):
            with torch.inference_mode():
                _, frame, _ = wm.step(state, actions)  # from the same context every call: one step's cost
            frame.cpu()  # the dreamer publishes the frame: its copy to the host is part of the step

        out[f"world_model_step_torch_batch{batch}"] = percentiles(latencies_ms(wm_step, plan["calls"]))
    return out


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="every part at toy size (seconds, any device)")
    parser.add_argument("--compile", action="store_true", help="train-wm with model.train.compile=true (torch.compile)")
    parser.add_argument("--output", type=Path, help="JSON path (default bench/results/gpu_benchmark[_dry_run].json)")
    args = parser.parse_args()
    plan = {**(DRY if args.dry_run else FULL), "compile": args.compile}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    report: dict = {
        "dry_run": args.dry_run,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "torch": torch.__version__,
        "plan": plan,
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        dataset = write_dataset(tmp / "dataset", per_kind=plan["per_kind"], scale=plan["scale"], max_len=100)
        run = tmp / "run"
        parts = {
            "train_wm": lambda: train_world_model(dataset, run, plan, device),
            "evaluate_wm": lambda: evaluate_world_model(run, plan),
            "imagination": lambda: imagination_speed(run, write_goal(dataset, tmp), plan, device),
            "latency": lambda: latency(run, plan, device, tmp),
        }
        for name, part in parts.items():
            part_start = time.perf_counter()
            report[name] = part()
            report[name]["part_seconds"] = time.perf_counter() - part_start
            print(f"gpu_benchmark: {name} done in {report[name]['part_seconds']:.0f} s", file=sys.stderr)
    report["total_seconds"] = time.perf_counter() - start
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        return report
    return publish("gpu_benchmark_dry_run" if args.dry_run else "gpu_benchmark", report)


def write_goal(dataset: Path, tmp: Path) -> Path:
    """The last frame of the dataset's first episode as the goal image (PNG)."""
    from PIL import Image

    from roboscape_r_ros.data.reader import EpisodeDataset

    arrays = EpisodeDataset.open(dataset).load_arrays()
    path = tmp / "goal.png"
    Image.fromarray(arrays.frames[arrays.starts[0] + arrays.lengths[0] - 1]).save(path)
    return path


if __name__ == "__main__":
    main()
