"""`roboscape-r train-imagination` under `torchrun --nproc_per_node 2` on CPU (gloo), on the toy grid world
(test/helpers/toy_world.py): two ranks of 8 imagined envs each train the policy to solve the real toy world as one
process of 16 envs does (test_imagination_ppo), rank 0 alone writes, and a run killed with its whole group
resumes from its last iteration."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from helpers.torchrun_runner import finish, kill_with_workers, torchrun
from helpers.toy_world import real_success, train_toy_world_model
from roboscape_r_ros import cli
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig
from roboscape_r_ros.rl.ppo import RESUME_FILE
from roboscape_r_ros.world_model.checkpoint import load_tensors

DECISIONS_PER_ITERATION = 16 * 16  # imagination.num_envs x ppo.num_steps, over both ranks


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    """A toy world-model run folder and an untrained policy for it (the PPO start: no BC)."""
    root = tmp_path_factory.mktemp("imagination_ddp")
    _, run = train_toy_world_model(root)
    torch.manual_seed(0)
    init = ImagePolicy(PolicyConfig(image_size=32, action_dim=2, channels=[16, 32], hidden=64, init_log_std=-0.5))
    return run, init.save(root / "init.safetensors")


def train_args(toy: tuple[Path, Path], output: Path, iterations: int, *extra: str) -> list[str]:
    """test_imagination_ppo's settings (reward -D + 10 [done]: SSIM to a demo goal frame) as CLI options."""
    run, init = toy
    settings = (
        f"init={init} output={output} threads=1 policy.action_dim=2 imagination.world_model={run} "
        "imagination.goal=demo imagination.num_envs=16 imagination.max_steps=6 imagination.context_frames=1 "
        "imagination.reward.perception.backend=ssim imagination.reward.alignment_offset=1.0 "
        f"ppo.total_steps={iterations * DECISIONS_PER_ITERATION} ppo.num_steps=16 ppo.update_epochs=4 "
        "ppo.num_minibatches=4 ppo.lr=3e-3 ppo.critic_lr=3e-3 ppo.seed=0"
    )
    return ["train-imagination", "--preset", "tiny", *settings.split(), *extra]


def saved_iteration(output: Path) -> int:
    return int(load_tensors(output / RESUME_FILE, ("step",))[1]["step"])


@pytest.mark.slow
def test_two_ranks_train_in_imagination_and_solve_the_real_toy(toy, tmp_path):
    out = tmp_path / "ddp"
    start = time.perf_counter()
    code, stdout, err = finish(torchrun(*train_args(toy, out, 8)))
    assert code == 0, err[-3000:]
    policy = ImagePolicy.load(out / "imagination.safetensors")
    success = real_success(policy)
    summary = json.loads((out / "imagination.json").read_text())
    print(f"2 ranks: real toy success {success:.2f} after {time.perf_counter() - start:.1f} s; {summary['final']}")
    assert stdout.count("imagination.safetensors") == 1  # rank 0 alone prints the result
    assert summary["env"]["num_envs"] == 16 and summary["env"]["processes"] == 2
    # both ranks' imagined steps are counted: one world-model step per decision in the toy model
    assert summary["imagined_steps"]["decisions"] == summary["imagined_steps"]["world_model_steps"] == 8 * 256
    assert len(list((out / "tensorboard").glob("events.*"))) == 1 and not list(out.glob(".*.tmp*"))
    assert success >= 0.75  # the bar of the one-process test: trained only in imagination, it solves the real toy


@pytest.mark.slow
def test_killed_group_resumes_from_its_last_iteration(toy, tmp_path):
    out = tmp_path / "resumed"
    args = train_args(toy, out, 10, "ppo.checkpoint_every=1")
    proc = torchrun(*args)
    deadline, killed_at = time.monotonic() + 120, None
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / RESUME_FILE).exists() and saved_iteration(out) >= 3:
            kill_with_workers(proc.pid)
            killed_at = saved_iteration(out)
            break
        time.sleep(0.05)
    finish(proc, timeout=30)
    assert killed_at is not None, "train-imagination ended before it could be killed"
    killed = saved_iteration(out)  # what the group left, read once every rank is dead
    assert 3 <= killed < 10 and not (out / "imagination.json").exists()

    code, _, err = finish(torchrun(*args))
    assert code == 0, err[-3000:]
    curve = json.loads((out / "imagination.json").read_text())["curve"]
    assert [c["iteration"] for c in curve] == list(range(1, 11))  # the interrupted run's iterations kept
    world_steps = [c["imagined/world_model_steps"] for c in curve]
    assert world_steps == [256 * i for i in range(1, 11)]  # counted on from the resume point

    # one process may continue the group's run (the global env count is what must not change) ...
    assert cli.main([*train_args(toy, out, 11), "ppo.checkpoint_every=1"]) == 0
    assert saved_iteration(out) == 11
    # ... but settings that shape the training are refused with one line
    assert cli.main([*train_args(toy, out, 12), "ppo.lr=0.01"]) == 2
    assert cli.main([*train_args(toy, out, 12), "imagination.num_envs=8"]) == 2


@pytest.mark.slow
def test_uneven_env_split_is_one_line_from_the_group(toy, tmp_path):
    code, _, err = finish(torchrun(*train_args(toy, tmp_path / "odd", 1, "imagination.num_envs=15")), timeout=120)
    lines = [line for line in err.splitlines() if "roboscape-r train-imagination: error:" in line]
    assert code != 0 and len(lines) == 1, err[-3000:]
    assert "imagination.num_envs=15 does not split evenly over 2 processes" in lines[0]
