"""`roboscape-r train-wm` end to end on a tiny synthetic dataset: run folder, kill -9 and resume, bad
checkpoints; plus the data helpers it uses (stratified split, frame-skipped windows, presets)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from helpers.wm_synthetic import kill_once_saved, saved_step, train_wm_args
from roboscape_r_ros import cli
from roboscape_r_ros.commands.train_wm import TrainWMConfig
from roboscape_r_ros.config import load_config
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.data.windows import WindowLoader
from roboscape_r_ros.world_model import WorldModel
from roboscape_r_ros.world_model.checkpoint import save_tensors
from roboscape_r_ros.world_model.data import SkipWindows, stratified_split

# Each test here runs on a model or a run trained for the module (seconds to a minute on 2 cores).
pytestmark = pytest.mark.slow

STEPS = {"tokenizer": 40, "action": 80, "goal": 20}


SETTINGS = ("model.frame_skip=2", "model.train.checkpoint_every=5", "media_every=40", "media_examples=2")


def train_args(dataset: Path, run: Path, *extra: str) -> list[str]:
    return train_wm_args(dataset, run, STEPS, *SETTINGS, *extra)


@pytest.fixture(scope="module")
def resumed_run(synthetic_dataset, tmp_path_factory):
    """train-wm in a subprocess, killed with SIGKILL in the action stage, then rerun to the end."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    errors = open(run.parent / "killed.err", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "roboscape_r_ros.cli", *train_args(synthetic_dataset, run)],
        stdout=subprocess.DEVNULL,
        stderr=errors,
        env=env,
    )
    killed_at = kill_once_saved(proc, run, "action", 10, lambda pid: os.kill(pid, signal.SIGKILL))
    proc.wait(timeout=30)
    errors.seek(0)
    assert killed_at is not None, f"train-wm ended before it could be killed: {errors.read()[-2000:]}"
    errors.close()
    assert proc.returncode == -signal.SIGKILL
    # what the killed run left behind is whole: the weights load, the stage resumes mid-way
    WorldModel.from_checkpoint(run / "world_model.safetensors")
    killed_step = saved_step(run, "action")
    assert 10 <= killed_step < STEPS["action"]
    start = time.perf_counter()
    assert cli.main(train_args(synthetic_dataset, run)) == 0
    print(f"killed at action step {killed_step}; resumed run took {time.perf_counter() - start:.1f} s")
    return run, killed_step


def test_resume_after_kill_finishes_every_stage(resumed_run):
    run, killed_step = resumed_run
    for stage, steps in STEPS.items():
        assert saved_step(run, stage) == steps
    log = (run / "train.log").read_text()
    assert f"action: resuming at step {killed_step} of {STEPS['action']}" in log
    assert "finished:" in log
    wm = WorldModel.from_checkpoint(run / "world_model.safetensors")
    assert wm.cfg.frame_skip == 2 and wm.cfg.image_size == 32
    assert not list(run.glob(".*.tmp*")), "temporary checkpoint files left behind"


def test_run_folder_holds_config_split_tensorboard_and_media(resumed_run, synthetic_dataset):
    run, _ = resumed_run
    cfg = load_config(TrainWMConfig, "train_wm", str(run / "config.yaml"), [])  # the resolved config loads back
    assert cfg.model.frame_skip == 2 and cfg.dataset == str(synthetic_dataset)
    split = yaml.safe_load((run / "split.json").read_text())
    train, held_out = set(split["train"]), set(split["held_out"])
    assert not train & held_out and train | held_out == set(range(24))
    assert len(held_out) == 8  # one of every (task, kind) group of three
    ds = EpisodeDataset.open(synthetic_dataset)
    assert {(ds.episodes[i].task, ds.episodes[i].kind) for i in held_out} == {
        (t, k) for t in ("reach-v3", "push-v3") for k in ("expert", "noisy", "failed", "random")
    }
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in (run / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"tokenizer/psnr", "action/token_ce", "action/done_mse", "goal/loss"} <= tags
    gifs = sorted((run / "media").glob("dream_action_*.gif"))
    assert gifs and (run / "media" / "goal.gif").exists()
    with Image.open(gifs[-1]) as gif:
        assert gif.n_frames > 2
    progress = yaml.safe_load((run / "progress.json").read_text())
    assert set(progress["seconds"]) == set(STEPS)


def test_finished_run_reruns_to_nothing_and_refuses_other_model_settings(resumed_run, synthetic_dataset, capsys):
    run, _ = resumed_run
    before = (run / "world_model.safetensors").stat().st_mtime_ns
    assert cli.main(train_args(synthetic_dataset, run)) == 0
    assert (run / "world_model.safetensors").stat().st_mtime_ns == before  # nothing retrained
    capsys.readouterr()
    assert cli.main(train_args(synthetic_dataset, run, "model.dynamics.dim=32")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.dynamics.dim=64" in err and str(run) in err


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_damaged_checkpoint_is_a_one_line_error_naming_the_file(
    resumed_run, synthetic_dataset, tmp_path, capsys, damage
):
    run, _ = resumed_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock"))
    path = copy / "world_model.safetensors"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    else:
        save_tensors(path, {"weight": torch.zeros(3)}, {"note": "someone else's file"})
    capsys.readouterr()
    for argv in (train_args(synthetic_dataset, copy), ["evaluate-wm", f"run={copy}", "progress=false"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err, err


def test_bad_dataset_for_the_model_is_a_one_line_error(synthetic_dataset, tmp_path, capsys):
    argv = train_args(synthetic_dataset, tmp_path / "run", "model.image_size=64")
    assert cli.main(argv) == 2
    assert "model.image_size=32" in capsys.readouterr().err


def test_stratified_split_and_frame_skipped_windows(synthetic_dataset):
    ds = EpisodeDataset.open(synthetic_dataset)
    train, held_out = stratified_split(ds.episodes, 0.3, seed=0)
    assert stratified_split(ds.episodes, 0.3, seed=0) == (train, held_out)
    assert stratified_split(ds.episodes, 0.3, seed=1) != (train, held_out)
    windows = SkipWindows(ds, context_length=4, frame_skip=2, batch_size=64, episodes=train, seed=0)
    batch = windows.sample()
    assert batch["frames"].shape == (64, 4, 32, 32, 3) and batch["actions"].shape == (64, 4, 4)
    arrays = ds.load_arrays()
    rows, episodes = WindowLoader(ds, window=7, batch_size=64, episodes=train, seed=0).sample_rows()
    assert np.array_equal(batch["frames"], arrays.frames[rows[:, ::2]])
    assert np.allclose(batch["actions"][:, :3], arrays.actions[rows[:, :-1]].reshape(64, 3, 2, 4).mean(2))
    assert (batch["actions"][:, 3] == 0).all() and set(batch["episode_index"].tolist()) <= set(train)


def test_first_window_share_draws_episode_starts(synthetic_dataset):
    ds = EpisodeDataset.open(synthetic_dataset)
    arrays = ds.load_arrays()
    loader = WindowLoader(ds, window=5, batch_size=40, seed=0, first_window_share=0.5)
    for _ in range(5):
        rows, episodes = loader.sample_rows()
        assert (rows[:20, 0] == arrays.starts[episodes[:20]]).all()
    plain = WindowLoader(ds, window=5, batch_size=40, seed=0)  # default: the same draws as before the option
    again = WindowLoader(ds, window=5, batch_size=40, seed=0, first_window_share=0.0)
    assert all(np.array_equal(a, b) for a, b in zip(plain.sample().values(), again.sample().values()))


def test_split_names_the_dataset_by_absolute_path(synthetic_dataset, tmp_path, monkeypatch):
    """A run trained with a relative dataset path is used from other folders (ros2 launch, the demo)."""
    monkeypatch.chdir(synthetic_dataset.parent)
    run = tmp_path / "run"
    args = train_args(Path(synthetic_dataset.name), run, "model.train.tokenizer_steps=1", "model.train.action_steps=1")
    assert cli.main([*args, "model.train.goal_steps=0", "media_every=0"]) == 0
    monkeypatch.chdir(tmp_path)
    named = Path(yaml.safe_load((run / "split.json").read_text())["dataset"])
    assert named.is_absolute() and EpisodeDataset.open(named).num_episodes == 24
