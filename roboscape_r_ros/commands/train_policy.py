"""Policy training entry points: BC warm start, then PPO in the physics sim (the exogenous-reward baseline)
or PPO in imagination (the world model as the env, with its endogenous reward).

    cfg = load_config(PolicyTrainConfig, "policy", "tiny", ["output=outputs/policies/x"])
    run_bc(cfg)                -> <output>/bc.safetensors (and bc-resume.safetensors: a rerun continues)
    run_sim_baseline(cfg)      -> <output>/bc.safetensors (unless init is given), <output>/policy.safetensors
    run_imagination_ppo(cfg)   -> <output>/bc.safetensors (unless init is given), <output>/imagination.safetensors

Each run writes TensorBoard logs under <output>/tensorboard and a JSON summary of its stats (with
wall time and environment steps) beside the checkpoints (bc.json, ppo.json, imagination.json), and
returns a PolicyTrainResult (``PolicyTrainResult.load`` reads it back from the folder).
Imagination PPO uses the same policy, BC and PPO configs with the imagination env in place of the
sim env; its summary counts imagined world-model steps and the control steps they stand for.
``learner=distil`` trains in the same env with imagine-filter-distil (rl/distil.py) instead of PPO.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from roboscape_r_ros.config import ConfigError, option, to_dict
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.distributed import ranks, sum_metrics
from roboscape_r_ros.files import write_atomic
from roboscape_r_ros.imagination.env import ImaginationConfig, make_imagination_env
from roboscape_r_ros.rl.bc import BCConfig, DemoSet, demo_episodes, train_bc
from roboscape_r_ros.rl.calibration import imagined_success
from roboscape_r_ros.rl.distil import DistilConfig, train_distil
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig
from roboscape_r_ros.rl.ppo import RESUME_FILE as PPO_RESUME_FILE
from roboscape_r_ros.rl.ppo import PPOConfig, train_ppo
from roboscape_r_ros.rl.resume import last_stats
from roboscape_r_ros.rl.sim_env import SimEnvConfig, SimVectorEnv

BC_FILE, POLICY_FILE, IMAGINATION_FILE = "bc.safetensors", "policy.safetensors", "imagination.safetensors"
# summary name -> ImaginationEnv's counter
IMAGINED_COUNTERS = {
    "world_model_steps": "world_steps",
    "control_steps": "control_steps",
    "episodes_started": "episodes_started",
}


@dataclass
class PolicyTrainConfig:
    policy: PolicyConfig = option(PolicyConfig(), help="policy network (frame size must match the env's)")
    bc: BCConfig = option(BCConfig(), help="behaviour-cloning warm start on a dataset's successful episodes")
    ppo: PPOConfig = option(PPOConfig(), help="PPO fine-tuning")
    sim: SimEnvConfig = option(SimEnvConfig(), help="physics-sim env of the exogenous-reward baseline")
    imagination: ImaginationConfig = option(
        ImaginationConfig(),
        help="imagination env: world model, context episodes, goals, step cap, endogenous reward (train-imagination)",
    )
    learner: Literal["ppo", "distil"] = option(
        "ppo",
        help="train-imagination's learner: PPO on the endogenous reward, or imagine-filter-distil (rl/distil.py: "
        "clone the imagined episodes the done signal accepts)",
    )
    distil: DistilConfig = option(DistilConfig(), help="imagine-filter-distil (learner=distil)")
    init: str = option("", help="start PPO from this policy checkpoint instead of running BC first")
    calibration_episodes: int = option(
        64,
        help="train-imagination: imagined episodes (from an episode's start, as long as a sim episode) that measure "
        "the success the world model credits the start and the trained policy with (0: skip)",
    )
    output: str = option("outputs/policies/sim-ppo", help="run folder: checkpoints, stats, TensorBoard logs")
    device: str = option("cpu", help="torch device")
    threads: int = option(0, help="torch CPU threads (0 = torch's default)")


class TensorBoardLog:
    """A ``log(step, stats)`` callable writing scalars under ``prefix/`` (TensorBoard is imported lazily)."""

    def __init__(self, run_dir: Path, prefix: str):
        from torch.utils.tensorboard import SummaryWriter

        self.writer, self.prefix = SummaryWriter(str(run_dir / "tensorboard")), prefix

    def __call__(self, step: int, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.writer.add_scalar(f"{self.prefix}/{key}", value, step)

    def close(self) -> None:
        self.writer.close()


def _logged(
    run_dir: Path,
    prefix: str,
    train: Callable[[Callable[[int, dict[str, float]], None] | None], list[dict[str, float]]],
) -> list[dict[str, float]]:
    if not ranks().main:
        return train(None)  # under torchrun rank 0 alone writes TensorBoard
    log = TensorBoardLog(run_dir, prefix)
    try:
        return train(log)
    finally:
        log.close()


@dataclass(frozen=True)
class PolicyTrainResult:
    """What a policy training stage leaves, as the JSON summary beside its checkpoint records it."""

    checkpoint: Path
    wall_s: float  # training wall time (train-imagination: its PPO part)
    final: dict[str, float]  # the last logged statistics
    imagined_steps: dict[str, int] | None = None  # train-imagination: decisions, world-model and control steps

    def __str__(self) -> str:
        return str(self.checkpoint)

    @classmethod
    def load(cls, run_dir: str | Path, stage: Literal["bc", "ppo", "imagination"]) -> PolicyTrainResult:
        """The result of the ``stage`` that wrote ``run_dir``/<stage>.json."""
        summary = json.loads((Path(run_dir) / f"{stage}.json").read_text())
        return cls(Path(summary["checkpoint"]), summary["wall_s"], summary["final"], summary.get("imagined_steps"))


def _finish(
    run_dir: Path,
    stage: Literal["bc", "ppo", "imagination"],
    cfg: PolicyTrainConfig,
    policy: ImagePolicy,
    checkpoint: str,
    history: list[dict[str, float]],
    wall_s: float,
    **extra: Any,
) -> PolicyTrainResult:
    """Save the policy, then the summary naming it (<stage>.json) and return the result (under torchrun
    rank 0 alone writes)."""
    path = run_dir / checkpoint
    summary: dict[str, Any] = {
        "config": to_dict(cfg),
        "checkpoint": str(path),
        "wall_s": wall_s,
        "final": history[-1] if history else {},
        **extra,
    }
    if ranks().main:
        policy.save(path)
        write_atomic(run_dir / f"{stage}.json", json.dumps(summary, indent=1, default=str))
    return PolicyTrainResult(path, wall_s, summary["final"], extra.get("imagined_steps"))


def _setup(cfg: PolicyTrainConfig) -> Path:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.output)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def run_bc(cfg: PolicyTrainConfig, progress: bool = True) -> PolicyTrainResult:
    """Behaviour cloning from ``cfg.bc.dataset``; a rerun resumes from <output>/bc-resume.safetensors.
    Under torchrun bc.batch_size is the global batch, split over the ranks."""
    run_dir = _setup(cfg)
    torch.manual_seed(cfg.bc.seed)
    dataset = EpisodeDataset.open(cfg.bc.dataset)
    policy = ImagePolicy(cfg.policy).to(cfg.device)
    start = time.perf_counter()
    history = _logged(run_dir, "bc", lambda log: train_bc(policy, dataset, cfg.bc, log, progress, run_dir))
    return _finish(run_dir, "bc", cfg, policy, BC_FILE, history, time.perf_counter() - start)


def run_sim_baseline(cfg: PolicyTrainConfig, progress: bool = True) -> PolicyTrainResult:
    """BC warm start (or ``cfg.init``), then PPO in the physics sim with Meta-World's dense reward."""
    run_dir = _setup(cfg)
    init = Path(cfg.init) if cfg.init else run_bc(cfg, progress).checkpoint
    policy = ImagePolicy.load(init, device=cfg.device)
    env = SimVectorEnv(cfg.sim)
    start = time.perf_counter()
    try:
        history = _logged(run_dir, "ppo", lambda log: train_ppo(policy, env, cfg.ppo, log, progress, run_dir))
    finally:
        env.close()
    return _finish(run_dir, "ppo", cfg, policy, POLICY_FILE, history, time.perf_counter() - start)


def _mean_return(history: list[dict[str, float]], part: slice) -> float | None:
    values = [h["episode/return"] for h in history[part] if "episode/return" in h]
    return sum(values) / len(values) if values else None


def imagined_successes(cfg: PolicyTrainConfig, init: Path, trained: ImagePolicy, frame_skip: int) -> dict[str, Any]:
    """The success the world model imagines for the start policy and the trained one, in episodes that
    begin where real ones begin and last as long as a sim episode (``sim.env.max_steps`` control steps).
    An imagined success is an episode the done signal ends, so episodes end on it even where training
    ran with ``terminate_on_done=false``."""
    env_cfg = replace(
        cfg.imagination,
        start_fraction=0.0,
        max_steps=math.ceil(cfg.sim.env.max_steps / frame_skip),
        terminate_on_done=True,
    )
    env, _ = make_imagination_env(env_cfg, cfg.device, action_dim=cfg.policy.action_dim)
    try:
        start = ImagePolicy.load(init, device=cfg.device)
        return {
            "world_model_steps": env_cfg.max_steps,
            "init": imagined_success(start, env, cfg.calibration_episodes),
            "trained": imagined_success(trained, env, cfg.calibration_episodes),
        }
    finally:
        env.close()


def run_imagination_ppo(cfg: PolicyTrainConfig, progress: bool = True) -> PolicyTrainResult:
    """BC warm start (or ``cfg.init``), then PPO inside the world model with the endogenous reward.

    The world model and its held-out context episodes come from ``cfg.imagination``; it is frozen.
    Imagined returns and "success" (the done head firing) are training signals only: judge the
    policy by its success in the physics sim (``roboscape-r evaluate``).
    """
    run_dir = _setup(cfg)
    start = time.perf_counter()
    # under torchrun each rank imagines its share of imagination.num_envs
    shard = ranks().shard(cfg.imagination.num_envs, "imagination.num_envs")
    rank_envs = replace(cfg.imagination, num_envs=shard.stop - shard.start)
    # the env first: a wrong checkpoint, dataset or goal image fails before BC spends minutes
    env, wm_run = make_imagination_env(rank_envs, cfg.device, action_dim=cfg.policy.action_dim)
    for warning in env.warnings:
        print(f"train-imagination: warning: {warning}", file=sys.stderr)
    try:
        if not cfg.init:
            ImagePolicy(cfg.policy).check_compatible(
                env.action_dim, env.image_shape, f"world model {wm_run.checkpoint}"
            )
        bc_start = time.perf_counter()
        init = Path(cfg.init) if cfg.init else run_bc(cfg, progress).checkpoint
        bc_s = time.perf_counter() - bc_start if not cfg.init else 0.0
        policy = ImagePolicy.load(init, device=cfg.device)
        policy.check_compatible(env.action_dim, env.image_shape, f"world model {wm_run.checkpoint}")
        ppo_start = time.perf_counter()
        # the env's counters, summed over the ranks and counted from the run's start (a resumed run's included)
        resumed = last_stats(run_dir / PPO_RESUME_FILE)
        offset = {name: resumed.get(f"imagined/{name}", 0.0) for name in IMAGINED_COUNTERS}

        def imagined_counts() -> dict[str, float]:
            counts = sum_metrics({name: float(getattr(env, attr)) for name, attr in IMAGINED_COUNTERS.items()})
            return {f"imagined/{name}": offset[name] + counts[name] for name in IMAGINED_COUNTERS}

        def train(log: Callable[[int, dict[str, float]], None] | None) -> list[dict[str, float]]:
            def with_counts(step: int, stats: dict[str, float]) -> None:
                # ppo's control_steps counts decisions x chunk; a world-model step is frame_skip control steps
                stats.update(imagined_counts())
                if log is not None:
                    log(step, stats)

            if cfg.learner == "distil":
                if ranks().world_size > 1:
                    raise ConfigError("learner=distil runs in one process (not under torchrun)")
                dataset = EpisodeDataset.open(cfg.bc.dataset)
                demos = DemoSet(dataset, demo_episodes(dataset), cfg.policy.chunk, cfg.bc.goal, cfg.bc.seed)
                return train_distil(policy, env, demos, cfg.distil, cfg.bc, with_counts, progress)
            return train_ppo(policy, env, cfg.ppo, with_counts, progress, run_dir)

        history = _logged(run_dir, "imagination", train)
        ppo_s = time.perf_counter() - ppo_start
        calibration = None
        if cfg.calibration_episodes > 0 and ranks().main:
            calibration = imagined_successes(cfg, init, policy, env.frame_skip)
        last = history[-1]
        steps = {"decisions": int(last["decisions"])} | {
            name: int(last[f"imagined/{name}"]) for name in IMAGINED_COUNTERS
        }
        new_world_steps = steps["world_model_steps"] - offset["world_model_steps"]
        summary = {
            "kind": f"imagination-{cfg.learner}",
            "world_model": str(wm_run.checkpoint),
            "init": str(init),
            "env": env.describe() | {"num_envs": cfg.imagination.num_envs, "processes": ranks().world_size},
            "imagined_steps": steps,
            "wall": {
                "total_s": time.perf_counter() - start,
                "bc_s": bc_s,
                "ppo_s": ppo_s,
                "world_model_steps_per_s": new_world_steps / ppo_s if ppo_s > 0 else None,
            },
            "imagined_return": {
                "first_iterations": _mean_return(history, slice(0, 2)),
                "last_iterations": _mean_return(history, slice(-2, None)),
            },
            "curve": [
                {
                    k: h[k]
                    for k in (
                        "iteration",
                        "round",
                        "imagined/world_model_steps",
                        "wall_s",
                        "episode/return",
                        "episode/success",
                        "episode/length",
                        "distil/imagined_success",
                        "distil/kept_decisions",
                    )
                    if k in h
                }
                for h in history
            ],
            "imagined_success": calibration,
            "note": "imagined return and success (done head fired) are not real success; evaluate in the sim",
        }
    finally:
        env.close()
    return _finish(run_dir, "imagination", cfg, policy, IMAGINATION_FILE, history, ppo_s, **summary)
