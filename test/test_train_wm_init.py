"""train-wm from an existing world model (init=...) on a dataset that extends the init run's: the weights it
starts from, the stages it trains, the split it keeps, and the inputs it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.wm_synthetic import episode, train_wm_args, write_dataset
from roboscape_r_ros import cli
from roboscape_r_ros.data.lerobot import DatasetWriter
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.world_model.checkpoint import load_tensors

STEPS = {"tokenizer": 30, "action": 20, "goal": 10}
NEW = 4  # policy episodes per task appended to the init run's dataset


def args(dataset: Path, run: Path, *extra: str) -> list[str]:
    return train_wm_args(dataset, run, STEPS, "model.frame_skip=2", "media_examples=1", *extra)


def weights(run: Path) -> dict:
    return load_tensors(run / "world_model.safetensors", ())[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "synthetic", per_kind=2)


@pytest.fixture(scope="module")
def extended(base) -> Path:
    """base's episodes, then NEW 'policy' episodes of each task (as rollouts writes them)."""
    old = EpisodeDataset.open(base)
    root = base.parent / "extended"
    rng = np.random.default_rng(1)
    with DatasetWriter(
        root,
        fps=old.fps,
        camera=old.camera,
        image_shape=old.image_shape,
        action_names=old.action_names,
        state_names=old.state_names,
    ) as writer:
        for i in range(old.num_episodes):
            writer.add_episode(old.episode(i))
        for task in ("reach-v3", "push-v3"):
            for _ in range(NEW):
                new = episode(task, "noisy", rng)
                new.kind = "policy"
                writer.add_episode(new)
    return root


@pytest.fixture(scope="module")
def init_run(base, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "init"
    assert cli.main(args(base, run)) == 0
    return run


@pytest.mark.slow
def test_fine_tune_starts_from_the_init_weights_and_keeps_its_split(init_run, base, extended, tmp_path):
    # at learning rate 0 the fine-tuned model is the init model, bit for bit: it started from those weights
    frozen = tmp_path / "lr0"
    assert cli.main(args(extended, frozen, f"init={init_run}", "model.train.lr=0")) == 0
    start, init = weights(frozen), weights(init_run)
    assert start.keys() == init.keys() and all(np.array_equal(start[k], init[k]) for k in init)

    parent, split = (json.loads((run / "split.json").read_text()) for run in (init_run, frozen))
    old = EpisodeDataset.open(base).num_episodes
    assert set(parent["held_out"]) <= set(split["held_out"]) and set(parent["train"]) <= set(split["train"])
    new_held_out = [i for i in split["held_out"] if i >= old]
    assert len(new_held_out) == 2  # round(0.3 x 4) of each task's policy episodes
    assert sorted(split["train"] + split["held_out"]) == list(range(old + 2 * NEW))
    assert split["parent"]["num_episodes"] == old and split["parent"]["num_frames"] == parent["num_frames"]
    assert split["num_episodes"] == old + 2 * NEW


def test_fine_tune_trains_the_dynamics_and_keeps_tokenizer_and_goal_model(init_run, extended, tmp_path):
    run = tmp_path / "tuned"
    assert cli.main(args(extended, run, f"init={init_run}", "held_out_new=false")) == 0
    tuned, init = weights(run), weights(init_run)
    changed = {key for key in init if not np.array_equal(tuned[key], init[key])}
    trained = {key for key in init if key.startswith(("dynamics.", "actions."))}  # the done head is in dynamics
    assert changed <= trained and len(changed) > 0.9 * len(trained)
    assert any(key.startswith("dynamics.done") for key in changed), sorted(trained)
    split = json.loads((run / "split.json").read_text())
    assert split["held_out"] == json.loads((init_run / "split.json").read_text())["held_out"]
    log = (run / "train.log").read_text()
    assert "fine-tuning action" in log and "goal: kept from init" in log
    assert not (run / "optim-tokenizer.safetensors").exists() and not (run / "optim-goal.safetensors").exists()


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (("model.dynamics.dim=32",), "model.dynamics.dim=64 there, 32 here"),
        (("finetune=[decoder]",), "unknown stage 'decoder'"),
    ],
)
def test_mismatched_model_or_stage_is_refused_in_one_line(init_run, extended, tmp_path, capsys, extra, fragment):
    capsys.readouterr()
    assert cli.main(args(extended, tmp_path / "run", f"init={init_run}", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err


def test_a_dataset_that_does_not_extend_the_init_runs_is_refused(init_run, tmp_path, capsys):
    other = write_dataset(tmp_path / "other", per_kind=2, seed=5)  # as many episodes, other lengths
    capsys.readouterr()
    assert cli.main(args(other, tmp_path / "run", f"init={init_run}")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not extend the init run's dataset" in err, err
