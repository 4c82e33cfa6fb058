"""`roboscape-r evaluate-wm` on a tiny train-wm run: the report, its tables, plots, GIF and metrics,
on the run's own dataset (its held-out split) and on another dataset (every episode)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from roboscape_r_ros import cli
from roboscape_r_ros.config import load_config
from roboscape_r_ros.imagination.toy import write_toy_dataset
from roboscape_r_ros.world_model.evaluate import EvaluateWMConfig, Evaluation, auroc
from wm_synthetic import write_dataset

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    dataset = write_dataset(root / "synthetic", seed=1)
    run = root / "run"
    steps = ["model.train.tokenizer_steps=40", "model.train.action_steps=40", "model.train.goal_steps=10"]
    assert cli.main(["train-wm", "--preset", "tiny", f"dataset={dataset}", f"run={run}", "threads=1",
                     "progress=false", "held_out_fraction=0.3", *steps]) == 0
    return root, run, dataset


def evaluate(run, output, *overrides: str) -> dict:
    assert cli.main(["evaluate-wm", "--preset", "tiny", f"run={run}", f"output={output}", "progress=false",
                     *overrides]) == 0
    return json.loads((output / "metrics.json").read_text())


@pytest.fixture(scope="module")
def evaluated(trained):
    root, run, dataset = trained
    evaluate(run, run / "eval", f"dataset={dataset.parent}/./{dataset.name}")  # the run's dataset, spelled otherwise
    return run / "eval"


@pytest.fixture(scope="module")
def other(trained):
    """Another dataset with the run's episode count: split.json's indices name other episodes there."""
    root, _, _ = trained
    return write_dataset(root / "other", seed=2)


def test_report_has_every_table_and_picture(evaluated):
    report = (evaluated / "report.md").read_text()
    for heading in ("## Headline", "## Open-loop rollouts", "## Done head", "## Goal model", "## Pictures"):
        assert heading in report
    assert "Perceptual distance: **effnet**" in report
    for name in ("psnr_vs_horizon.png", "done_roc.png", "real_dream_goal.gif"):
        assert f"]({name})" in report
        with Image.open(evaluated / name) as image:
            assert image.size[0] > 100
    with Image.open(evaluated / "real_dream_goal.gif") as gif:
        assert gif.n_frames > 2


def test_metrics_are_finite(evaluated):
    metrics = json.loads((evaluated / "metrics.json").read_text())
    horizons = metrics["open_loop"]["horizons"]
    assert set(horizons) == {"1", "4", "8"}
    for h, row in horizons.items():
        for key in ("psnr", "psnr_copy_last", "psnr_gain", "psnr_tokenizer_ceiling", "dpsnr", "ssim", "perceptual",
                    "perceptual_copy_last", "psnr_changed"):
            assert isinstance(row[key], float) and math.isfinite(row[key]), (h, key, row[key])
        assert row["windows"] >= 2
    done = metrics["done_head"]
    assert 0 <= done["auroc"] <= 1 and done["positives"] > 0
    for kind in ("failed", "random"):
        assert done[f"fpr_{kind}"]["episodes"] >= 1 and 0 <= done[f"fpr_{kind}"]["episode_fpr"] <= 1
    goal = metrics["goal_model"]
    assert goal["episodes"] >= 2
    for key in ("perceptual_goal", "perceptual_task_mean_final", "psnr_goal", "psnr_task_mean_final"):
        assert math.isfinite(goal[key])


def test_auroc_matches_pair_counting():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200).astype(float)  # many ties
    labels = rng.random(200) < 0.3
    pos, neg = scores[labels], scores[~labels]
    pairs = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
    assert auroc(scores, labels) == pytest.approx(pairs)
    assert math.isnan(auroc(scores, np.zeros(200, bool)))


def test_the_runs_own_dataset_scores_the_held_out_split(trained, evaluated):
    _, run, _ = trained
    split = json.loads((run / "split.json").read_text())
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["held_out_episodes"] == len(split["held_out"]) < split["num_episodes"]
    assert metrics["episodes_scored"] == f"the run's {len(split['held_out'])} held-out episodes (split.json)"
    assert metrics["open_loop"]["horizons"]["1"]["episodes"] <= len(split["held_out"])
    assert metrics["goal_model"]["task_mean_final_source"].startswith("the run's training split")


def test_another_dataset_of_the_same_size_scores_all_its_episodes(trained, other):
    """The bug: split.json's held-out indices were scored on any dataset of the same episode count."""
    root, run, dataset = trained
    split = json.loads((run / "split.json").read_text())
    assert json.loads((other / "meta/info.json").read_text())["total_episodes"] == split["num_episodes"]
    metrics = evaluate(run, root / "eval_other", f"dataset={other}", "horizons=[1]")
    n = split["num_episodes"]
    assert metrics["held_out_episodes"] == n
    assert metrics["episodes_scored"] == f"all {n} episodes (not the run's dataset)"
    assert metrics["open_loop"]["horizons"]["1"]["episodes"] == n  # every episode holds a 1-step window
    assert f"scored: all {n} episodes (not the run's dataset)" in (root / "eval_other/report.md").read_text()
    goal = metrics["goal_model"]
    assert goal["task_mean_final_source"] == f"the run's training split of {dataset}"
    assert math.isfinite(goal["perceptual_task_mean_final"])


def test_without_the_runs_dataset_the_mean_final_baseline_is_na(trained, other):
    root, run, dataset = trained
    away = dataset.with_name("moved_away")
    shutil.move(dataset, away)
    try:
        cfg = load_config(EvaluateWMConfig, "evaluate_wm", "tiny",
                          [f"run={run}", f"dataset={other}", f"output={root / 'eval_na'}", "progress=false"])
        goal, _ = Evaluation(cfg).goal_model()
    finally:
        shutil.move(away, dataset)
    assert goal["task_mean_final_source"].startswith("n/a: the run's dataset does not open")
    assert "no such folder" in goal["task_mean_final_source"]
    assert goal["psnr_task_mean_final"] != goal["psnr_task_mean_final"]  # NaN: no baseline
    assert math.isfinite(goal["psnr_goal"])


def test_another_action_space_is_a_one_line_config_error(trained, capsys):
    root, run, _ = trained
    toy = write_toy_dataset(root / "toy", {"expert": 2, "random": 2})  # 2-D actions, 32 px
    assert cli.main(["evaluate-wm", f"run={run}", f"dataset={toy}", "progress=false"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "2-D actions (dx, dy), the model takes 4-D" in lines[0], lines
