"""`roboscape-r train-wm` and `train-bc` under `torchrun --nproc_per_node 2` on CPU (gloo): the same loss
trajectory as one process with the same global batch, resume (train-wm after kill -9 of the whole group,
train-bc exactly where it stopped), and errors as one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.torchrun_runner import finish, kill_with_workers, losses, torchrun
from helpers.wm_synthetic import kill_once_saved, saved_step, train_wm_args
from roboscape_r_ros import cli
from roboscape_r_ros.rl.bc import RESUME_FILE
from roboscape_r_ros.rl.policy import ImagePolicy
from roboscape_r_ros.runs import RunFolder

STEPS = {"tokenizer": 20, "action": 20, "goal": 10}
ERROR = "roboscape-r train-wm: error:"


SETTINGS = ("model.frame_skip=2", "model.train.checkpoint_every=5", "media_every=0", "media_examples=1")


def train_args(dataset: Path, run: Path, *extra: str) -> list[str]:
    return train_wm_args(dataset, run, STEPS, *SETTINGS, *extra)


@pytest.mark.slow
def test_two_ranks_follow_one_process_with_the_same_global_batch(synthetic_dataset, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli.main(train_args(synthetic_dataset, one)) == 0
    code, out, err = finish(torchrun(*train_args(synthetic_dataset, two)))
    assert code == 0, err[-3000:]
    assert out.count("world model ") == 1, out  # rank 0 alone prints the result
    expected, got = losses(one), losses(two)
    # tokenizer: loss; action and goal: loss, token_ce, done_mse
    assert len(expected) == STEPS["tokenizer"] + 3 * (STEPS["action"] + STEPS["goal"]) and set(got) == set(expected)
    worst = max(expected, key=lambda key: abs(got[key] - expected[key]) / abs(expected[key]))
    relative = abs(got[worst] - expected[worst]) / abs(expected[worst])
    print(f"largest relative loss difference: {relative:.2e} ({worst[0]} at step {worst[1]})")
    assert relative < 0.01, worst
    # the tokenizer loss is a mean over equal shards: DDP's gradient average is the one process's gradient
    assert all(abs(got[k] - v) <= 1e-4 * abs(v) for k, v in expected.items() if k[0] == "tokenizer/loss")
    # rank 0 wrote the run folder alone: one TensorBoard file, no temporary files, the log names the group
    assert len(list((two / "tensorboard").glob("events.*"))) == 1 and not list(two.glob(".*.tmp*"))
    assert "x 2 processes (DDP)" in (two / "train.log").read_text()


@pytest.mark.slow
def test_resume_after_kill_of_the_whole_group(synthetic_dataset, tmp_path):
    run = tmp_path / "run"
    args = train_args(synthetic_dataset, run, "model.train.action_steps=60")
    proc = torchrun(*args)
    killed_at = kill_once_saved(proc, run, "action", 10, kill_with_workers)
    finish(proc, timeout=30)
    assert killed_at is not None, "train-wm ended before it could be killed"
    killed_step = saved_step(run, "action")  # what the group left behind, read once every rank is dead
    assert 10 <= killed_step < 60
    code, _, err = finish(torchrun(*args))
    assert code == 0, err[-3000:]
    log = (run / "train.log").read_text()
    assert f"action: resuming at step {killed_step} of 60" in log and "finished:" in log
    assert {stage: saved_step(run, stage) for stage in STEPS} == {**STEPS, "action": 60}


@pytest.mark.slow
def test_error_on_one_rank_ends_the_group_with_one_line(synthetic_dataset, tmp_path):
    run = tmp_path / "busy"
    with RunFolder.open(run, lock=True):  # only rank 0 takes the lock: rank 1 alone would go on
        code, _, err = finish(torchrun(*train_args(synthetic_dataset, run)), timeout=120)
    assert code != 0
    lines = [line for line in err.splitlines() if ERROR in line]
    assert len(lines) == 1 and "in use by another process" in lines[0], err[-3000:]
    assert "exitcode  : 2" in err  # torchrun's report of the failed rank


@pytest.mark.slow
def test_error_on_every_rank_is_printed_once(synthetic_dataset, tmp_path):
    code, _, err = finish(
        torchrun(*train_args(synthetic_dataset, tmp_path / "run", "model.train.batch_size=15")), timeout=120
    )
    assert code != 0
    lines = [line for line in err.splitlines() if ERROR in line]
    assert len(lines) == 1 and "model.train.batch_size=15 does not split evenly over 2 processes" in lines[0], err


def bc_args(dataset: Path, output: Path, steps: int) -> list[str]:
    # same_task goals and random shifts: every random draw of a batch is sharded
    settings = f"bc.steps={steps} bc.eval_every=10 bc.batch_size=32 bc.shift=2 bc.goal=same_task threads=1"
    return ["train-bc", "--preset", "tiny", f"bc.dataset={dataset}", f"output={output}", *settings.split()]


@pytest.mark.slow
def test_bc_on_two_ranks_and_resumed_follows_one_process(synthetic_dataset, tmp_path):
    """One process, 40 steps; against it: 2 ranks for 20 steps, then rerun to 40 (a resume, also on 2 ranks)."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli.main(bc_args(synthetic_dataset, one, 40)) == 0
    code, _, err = finish(torchrun(*bc_args(synthetic_dataset, two, 20)))
    assert code == 0, err[-3000:]
    code, _, err = finish(torchrun(*bc_args(synthetic_dataset, two, 40)))
    assert code == 0, err[-3000:]
    expected, got = losses(one), losses(two)
    assert {step for _, step in expected} == {0, 10, 20, 30, 40} and set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-3, nan_ok=True), key
    a, b = ImagePolicy.load(one / "bc.safetensors"), ImagePolicy.load(two / "bc.safetensors")
    assert all(torch.allclose(a.state_dict()[k], v, atol=1e-4) for k, v in b.state_dict().items())
    assert (two / RESUME_FILE).exists() and len(list((two / "tensorboard").glob("events.*"))) == 2  # rank 0, twice


def test_bc_resume_continues_exactly_and_refuses_other_settings(synthetic_dataset, tmp_path, capsys):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert cli.main(bc_args(synthetic_dataset, whole, 30)) == 0
    assert cli.main(bc_args(synthetic_dataset, resumed, 10)) == 0
    assert cli.main(bc_args(synthetic_dataset, resumed, 30)) == 0  # continues at step 10 with the saved random states
    a, b = ImagePolicy.load(whole / "bc.safetensors"), ImagePolicy.load(resumed / "bc.safetensors")
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    capsys.readouterr()
    assert cli.main([*bc_args(synthetic_dataset, resumed, 30), "bc.lr=0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bc.lr=0.001" in err and RESUME_FILE in err, err
