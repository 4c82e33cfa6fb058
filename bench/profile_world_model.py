"""Where the world model's CPU time goes: torch.profiler over train-wm steps and batched imagine steps.

Three workloads on the headline architecture (world_model preset `cpu` with changed_token_weight 4,
64x64 frames, 4-D actions; random weights, or a trained run's with --world-model):
  train_tokenizer  one tokenizer-stage step: batch 16 frames, reconstruction loss, backward, AdamW
  train_action     one action-stage step: batch 16 windows of context_length frames with their token ids
                   (precomputed, as train-wm's loader gives them), drawn from an in-memory frame store of
                   the headline dataset's size, loss, backward, gradient clipping, AdamW
  imagine          one batched imagine step of 64 environments (MaskGIT iterations, the clean pass that fills
                   the cache, frame decode) and the endogenous reward on its frames (effnet at 64 px, goal
                   embeddings cached), as bench/bench_imagination.py measures it

Every operator's own CPU time goes to the innermost label around it (roboscape_r_ros.profiling.label in
the tokenizer, dynamics and reward; this script's own around data, backward and the optimizer); a
backward operator goes to the label of the forward operator that made it (the profiler's sequence
numbers). Time inside a phase but outside every component label is Python and tensor glue.

Absolute times depend on what else runs on the machine: read the shares; `--machine-note` goes into the
output (say whether the machine was quiet). The profiler adds overhead: `wall_ms_unprofiled` is the
same step timed without it.

    python bench/profile_world_model.py                                  # JSON + markdown in bench/results/
    python bench/profile_world_model.py --world-model outputs/runs/wm3_w4 --steps 5 --machine-note quiet
    python bench/profile_world_model.py --world-model outputs/runs/wm3_w4 --workloads imagine \
        --inference decode_steps=1,precision=bfloat16          # the imagine step with the speed levers
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from roboscape_r_ros.config import load_config
from roboscape_r_ros.imagination.reward import EndogenousReward, RewardConfig
from roboscape_r_ros.perception.distance import PerceptionConfig
from roboscape_r_ros.profiling import PREFIX, label
from roboscape_r_ros.world_model import WorldModel, WorldModelConfig
from roboscape_r_ros.world_model.config import InferenceConfig
from roboscape_r_ros.world_model.data import skip_actions
from roboscape_r_ros.world_model.train import MODEL_FILE, to_device

RESULTS = Path(__file__).parent / "results" / "profile_world_model.json"
SIZE, ACTIONS = 64, 4
DATASET_FRAMES = 12_000  # the headline dataset: 120 episodes of up to ~150 frames
HEADLINE = [f"image_size={SIZE}", f"action_dim={ACTIONS}", "dynamics.changed_token_weight=4.0"]

# component labels -> the rows of the table ("glue" for time inside a phase but outside every component)
COMPONENTS = {
    "tokenizer.encode": "tokenizer encode",
    "tokenizer.decode": "tokenizer decode",
    "dynamics.attention.spatial": "attention: spatial",
    "dynamics.attention.temporal": "attention: temporal",
    "dynamics.attention.cross": "attention: cross (actions)",
    "dynamics.mlp": "MLPs",
    "dynamics.done_head": "done head",
    "dynamics.token_head": "token logits (MaskGIT choice / cross-entropy)",
    "dynamics.other": "dynamics other (embeddings, FiLM, norms)",
    "reward.perceptual": "perceptual network (effnet)",
    "host.batch": "host: batch from the frame store",
    "host.to_device": "host: batch to tensors",
    "train.optimizer": "optimizer (clip + AdamW)",
}


def build_model(args: argparse.Namespace) -> WorldModel:
    torch.manual_seed(0)
    if args.world_model:
        return WorldModel.from_checkpoint(Path(args.world_model) / MODEL_FILE)
    return WorldModel(load_config(WorldModelConfig, "world_model", args.preset, HEADLINE)).eval()


def train_step(model: WorldModel, stage: str, batch_size: int) -> Callable[[], None]:
    """One training step of the tokenizer or the action stage, as world_model/train.py's _fit runs it."""
    cfg, rng = model.cfg, np.random.default_rng(0)
    T, k = cfg.context_length, cfg.frame_skip
    frames = rng.integers(0, 256, (DATASET_FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    tokens = rng.integers(0, model.tokenizer.vocab_size, (DATASET_FRAMES, model.grid**2)).astype(np.int16)
    actions = rng.uniform(-1, 1, (DATASET_FRAMES, ACTIONS)).astype(np.float32)
    trained = model.tokenizer if stage == "tokenizer" else torch.nn.ModuleList([model.actions, model.dynamics])
    model.requires_grad_(False)
    trained.requires_grad_(True)
    params = list(trained.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, betas=(0.9, 0.95))
    model.train()
    autocast = torch.autocast(model.device.type, torch.bfloat16, enabled=cfg.train.cpu_amp)  # as train-wm on a CPU

    def step() -> None:
        with label("host.batch"):
            rows = rng.integers(0, DATASET_FRAMES - (T - 1) * k, batch_size)[:, None] + np.arange((T - 1) * k + 1)
            kept = rows[:, ::k]
            batch = {
                "frames": frames[kept],
                "tokens": tokens[kept],
                "actions": np.concatenate([skip_actions(actions[rows[:, :-1]], k), np.zeros((batch_size, 1, 4))], 1),
                "done": rng.uniform(0, 1, (batch_size, T)).astype(np.float32),
            }
        with label("host.to_device"):
            batch = to_device(batch, model.device)
        with label("train.forward"), autocast:
            if stage == "tokenizer":
                loss, _ = model.tokenizer.loss(batch["frames"][:, 0])
            else:
                loss, _ = model.action_loss(batch["frames"], batch["actions"].float(), batch["done"], batch["tokens"])
        with label("train.backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with label("train.optimizer"):
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            opt.step()

    return step


def imagine_step(model: WorldModel, batch: int, resolution: int) -> Callable[[], None]:
    """One batched imagine step with the endogenous reward, as bench/bench_imagination.py times it."""
    model.eval()
    rng = np.random.default_rng(0)
    c = model.cfg.context_length - 1
    context = rng.integers(0, 256, (batch, c, SIZE, SIZE, 3), dtype=np.uint8)
    reward = EndogenousReward(RewardConfig(perception=PerceptionConfig(backend="effnet", resolution=resolution)), batch)
    reward.set_goals(None, rng.integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8))
    holder = {"state": model.encode_context(context, np.zeros((batch, c - 1, ACTIONS), np.float32))}

    @torch.inference_mode()
    def step() -> None:
        with label("imagine.world_model"):
            holder["state"], frame, done = model.step(holder["state"], torch.rand(batch, ACTIONS) * 2 - 1)
        with label("imagine.reward"), model.autocast():  # as the imagination env runs it
            reward(frame, done)

    return step


def label_chain(event) -> list[str]:
    """The labels around a profiler event, outermost first (the event itself included when it is one)."""
    chain, e = [], event
    while e is not None:
        if e.name.startswith(PREFIX):
            chain.append(e.name[len(PREFIX) :])
        e = e.cpu_parent
    return chain[::-1]


def backward_node(event):
    """The autograd engine's event of the backward node an event runs in (None: a forward event)."""
    e = event
    while e is not None and not e.name.startswith("autograd::engine::evaluate_function"):
        e = e.cpu_parent
    return e


def attribute(events) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Own CPU time (us) per component (forward / backward) and per phase, over all profiled steps."""
    made_by: dict[tuple[int, int], str] = {}  # (thread, sequence number) -> innermost label of the forward op
    backward_of: dict[int, str] = {}  # id(evaluate_function event) -> component
    engines = {id(e): backward_node(e) for e in events}
    # an op that makes no autograd node shows the number the next node-making op takes: the last one wins
    for e in sorted(events, key=lambda e: e.time_range.start):
        if e.sequence_nr >= 0 and engines[id(e)] is None:
            chain = label_chain(e)
            made_by[(e.thread, e.sequence_nr)] = chain[-1] if chain else "unlabelled"
    components: dict[str, dict[str, float]] = defaultdict(lambda: {"forward": 0.0, "backward": 0.0})
    phases: dict[str, float] = defaultdict(float)
    for e in events:
        chain = label_chain(e)
        phase = " / ".join(chain[:2]) if chain[:1] == ["imagine.world_model"] else (chain[0] if chain else "none")
        phases[phase] += e.self_cpu_time_total
        engine = engines[id(e)]
        if engine is not None:
            if id(engine) not in backward_of:
                backward_of[id(engine)] = made_by.get((engine.fwd_thread, engine.sequence_nr), "unlabelled")
            components[backward_of[id(engine)]]["backward"] += e.self_cpu_time_total
        else:
            components[chain[-1] if chain else "unlabelled"]["forward"] += e.self_cpu_time_total
    return components, phases


def profile_workload(step: Callable[[], None], steps: int) -> dict:
    step()  # warm-up: allocations, first-call dispatch
    plain = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        plain.append(time.perf_counter() - start)
    walls = []
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            start = time.perf_counter()
            step()
            walls.append(time.perf_counter() - start)
    components, phases = attribute(prof.events())
    total = sum(c["forward"] + c["backward"] for c in components.values())
    rows = {}
    for name, c in sorted(components.items(), key=lambda kv: -(kv[1]["forward"] + kv[1]["backward"])):
        row = COMPONENTS.get(name, f"glue in {name}" if name != "unlabelled" else "outside every label")
        rows[row] = {
            "label": name,
            "forward_ms": c["forward"] / steps / 1e3,
            "backward_ms": c["backward"] / steps / 1e3,
            "share": (c["forward"] + c["backward"]) / total,
        }
    return {
        "steps": steps,
        "wall_ms_unprofiled": statistics.median(plain) * 1e3,
        "wall_ms_profiled": statistics.median(walls) * 1e3,
        "attributed_ms": total / steps / 1e3,
        "components": rows,
        "phases": {
            k: {"ms": v / steps / 1e3, "share": v / total} for k, v in sorted(phases.items(), key=lambda x: -x[1])
        },
    }


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# World model CPU profile",
        "",
        f"`{result['command']}`",
        "",
        f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} on {m['threads']} thread(s); load average "
        f"{m['load_average_1min_start']:.2f} at the start, {m['load_average_1min_end']:.2f} at the end. "
        f"Machine: **{m['note']}**. Model: {result['model']}.",
    ]
    for name, w in result["workloads"].items():
        lines += [
            "",
            f"## {name}: {w['what']}",
            "",
            f"{w['steps']} profiled steps: {w['wall_ms_unprofiled']:.1f} ms a step without the profiler, "
            f"{w['wall_ms_profiled']:.1f} ms with it ({w['attributed_ms']:.1f} ms attributed).",
            "",
            "| where | forward ms | backward ms | share |",
            "|---|---|---|---|",
            *(
                f"| {row} | {c['forward_ms']:.1f} | {c['backward_ms']:.1f} | {100 * c['share']:.1f}% |"
                for row, c in w["components"].items()
            ),
            "",
            "| phase | ms | share |",
            "|---|---|---|",
            *(f"| {p} | {v['ms']:.1f} | {100 * v['share']:.1f}% |" for p, v in w["phases"].items()),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", help="world_model preset of the random-weight model")
    parser.add_argument("--world-model", default="", help="a train-wm run folder: its model instead of random weights")
    parser.add_argument("--train-batch", type=int, default=16, help="train-wm batch (the cpu preset's)")
    parser.add_argument("--imagine-batch", type=int, default=64, help="imagined environments per step")
    parser.add_argument("--reward-resolution", type=int, default=64, help="effnet input side of the reward")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per workload (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--workloads", default="train_tokenizer,train_action,imagine", help="which workloads, comma-separated"
    )
    parser.add_argument(
        "--cpu-amp", action="store_true", help="train steps under bf16 autocast (model.train.cpu_amp=true)"
    )
    parser.add_argument(
        "--inference",
        default="",
        help="world_model.InferenceConfig overrides of the imagine workload, comma-separated "
        "(e.g. decode_steps=1,precision=bfloat16)",
    )
    parser.add_argument(
        "--machine-note",
        default="shared with other jobs: absolute times are noisy, read the shares",
        help="what else ran on the machine (goes into the output)",
    )
    parser.add_argument("--output", default=str(RESULTS), help="JSON file; the markdown table goes beside it (.md)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    model = build_model(args)
    model.cfg.train.cpu_amp = args.cpu_amp
    model.configure(load_config(InferenceConfig, "", None, [o for o in args.inference.split(",") if o]))
    workloads = {
        "train_tokenizer": (
            f"one tokenizer-stage step, batch {args.train_batch} frames",
            lambda: train_step(model, "tokenizer", args.train_batch),
        ),
        "train_action": (
            f"one action-stage step, batch {args.train_batch} windows of {model.cfg.context_length} frames",
            lambda: train_step(model, "action", args.train_batch),
        ),
        "imagine": (
            f"one imagine step of {args.imagine_batch} environments with the effnet reward at "
            f"{args.reward_resolution} px",
            lambda: imagine_step(model, args.imagine_batch, args.reward_resolution),
        ),
    }
    out = {}
    chosen = args.workloads.split(",")
    if unknown := sorted(set(chosen) - set(workloads)):
        parser.error(f"unknown workloads {unknown}; known: {', '.join(workloads)}")
    for name, (what, make_step) in ((n, workloads[n]) for n in chosen):  # one at a time: each sets what trains
        print(f"profiling {name}: {what}", file=sys.stderr, flush=True)
        out[name] = {"what": what, **profile_workload(make_step(), args.steps)}
    result = {
        "benchmark": "profile_world_model",
        "command": " ".join(["python", "bench/profile_world_model.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "threads": args.threads,
            "note": args.machine_note,
            "load_average_1min_start": load_start,
            "load_average_1min_end": os.getloadavg()[0],
        },
        "model": (
            f"{args.world_model or 'random weights, world_model preset ' + args.preset + ' ' + ' '.join(HEADLINE)}; "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
            f"training {'under bf16 autocast' if args.cpu_amp else 'in float32'}, imagining with "
            f"{model.cfg.dynamics.decode_steps} MaskGIT iterations in {model.precision}"
        ),
        "workloads": out,
    }
    text = markdown(result)
    print(text)
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    path.with_suffix(".md").write_text(text)
    print(f"wrote {path} and {path.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
