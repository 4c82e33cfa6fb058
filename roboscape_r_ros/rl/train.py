"""Policy training entry points: BC warm start, then PPO in the physics sim (the exogenous-reward baseline).

    cfg = load_config(PolicyTrainConfig, "policy", "tiny", ["output=outputs/policies/x"])
    run_bc(cfg)            -> <output>/bc.safetensors
    run_sim_baseline(cfg)  -> <output>/bc.safetensors (unless init is given), <output>/policy.safetensors

Each run writes TensorBoard logs under <output>/tensorboard and a JSON summary of its stats (with
wall time and environment steps) beside the checkpoints. Imagination PPO uses the same policy, BC
and PPO configs with the imagination env in place of the sim env.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from roboscape_r_ros.config import option, to_dict
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.rl.bc import BCConfig, train_bc
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig
from roboscape_r_ros.rl.ppo import PPOConfig, train_ppo
from roboscape_r_ros.rl.sim_env import SimEnvConfig, SimVectorEnv

BC_FILE, POLICY_FILE = "bc.safetensors", "policy.safetensors"


@dataclass
class PolicyTrainConfig:
    policy: PolicyConfig = option(PolicyConfig(), help="policy network (frame size must match the env's)")
    bc: BCConfig = option(BCConfig(), help="behaviour-cloning warm start on a dataset's successful episodes")
    ppo: PPOConfig = option(PPOConfig(), help="PPO fine-tuning")
    sim: SimEnvConfig = option(SimEnvConfig(), help="physics-sim env of the exogenous-reward baseline")
    init: str = option("", help="start PPO from this policy checkpoint instead of running BC first")
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


def _logged(run_dir: Path, prefix: str, train: Callable[[Callable], list[dict[str, float]]]) -> list[dict[str, float]]:
    log = TensorBoardLog(run_dir, prefix)
    try:
        return train(log)
    finally:
        log.close()


def _write_summary(path: Path, cfg: PolicyTrainConfig, history: list[dict[str, float]], wall_s: float) -> None:
    summary: dict[str, Any] = {"config": to_dict(cfg), "wall_s": wall_s, "final": history[-1] if history else {}}
    path.write_text(json.dumps(summary, indent=1, default=str))


def _setup(cfg: PolicyTrainConfig) -> Path:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.output)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def run_bc(cfg: PolicyTrainConfig, progress: bool = True) -> Path:
    """Behaviour cloning from ``cfg.bc.dataset``; returns the checkpoint path."""
    run_dir = _setup(cfg)
    torch.manual_seed(cfg.bc.seed)
    dataset = EpisodeDataset.open(cfg.bc.dataset)
    policy = ImagePolicy(cfg.policy).to(cfg.device)
    start = time.perf_counter()
    history = _logged(run_dir, "bc", lambda log: train_bc(policy, dataset, cfg.bc, log, progress))
    _write_summary(run_dir / "bc.json", cfg, history, time.perf_counter() - start)
    return policy.save(run_dir / BC_FILE)


def run_sim_baseline(cfg: PolicyTrainConfig, progress: bool = True) -> Path:
    """BC warm start (or ``cfg.init``), then PPO in the physics sim with Meta-World's dense reward."""
    run_dir = _setup(cfg)
    init = Path(cfg.init) if cfg.init else run_bc(cfg, progress)
    policy = ImagePolicy.load(init, device=cfg.device)
    env = SimVectorEnv(cfg.sim)
    start = time.perf_counter()
    try:
        history = _logged(run_dir, "ppo", lambda log: train_ppo(policy, env, cfg.ppo, log, progress))
    finally:
        env.close()
    _write_summary(run_dir / "ppo.json", cfg, history, time.perf_counter() - start)
    return policy.save(run_dir / POLICY_FILE)
