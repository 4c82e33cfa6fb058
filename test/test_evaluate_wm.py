"""`roboscape-r evaluate-wm` on a tiny train-wm run: the report, its tables, plots, GIF and metrics,
on the run's own dataset (its held-out split) and on another dataset (every episode)."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.toy_world import write_toy_dataset
from helpers.wm_synthetic import train_wm_args, write_dataset
from roboscape_r_ros import cli
from roboscape_r_ros.commands.evaluate_wm import EvaluateWMConfig, Evaluation
from roboscape_r_ros.config import load_config
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.world_model.model import WorldModel
from roboscape_r_ros.world_model.rollout import controllability_sheet, held_actions

# Each test here runs on a model or a run trained for the module (seconds to a minute on 2 cores).
pytestmark = pytest.mark.slow

SHEET_STEPS = 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    dataset = write_dataset(root / "synthetic", seed=1)
    run = root / "run"
    # 150 action steps: the fewest after which held actions visibly change the tiny model's rollouts
    steps = {"tokenizer": 40, "action": 150, "goal": 10}
    assert cli.main(train_wm_args(dataset, run, steps)) == 0
    return root, run, dataset


def evaluate(run, output, *overrides: str) -> dict:
    assert (
        cli.main(
            [
                "evaluate-wm",
                "--preset",
                "tiny",
                f"run={run}",
                f"output={output}",
                "progress=false",
                f"sheet_steps={SHEET_STEPS}",
                *overrides,
            ]
        )
        == 0
    )
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
    assert re.search(r"By task \(near the end\): ([a-z]+-v3 \d\.\d\d of \d+(, )?)+\.", report)
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
        for key in (
            "psnr",
            "psnr_copy_last",
            "psnr_gain",
            "psnr_tokenizer_ceiling",
            "dpsnr",
            "ssim",
            "perceptual",
            "perceptual_copy_last",
            "psnr_changed",
        ):
            assert isinstance(row[key], float) and math.isfinite(row[key]), (h, key, row[key])
        assert row["windows"] >= 2
    done = metrics["done_head"]
    assert 0 <= done["auroc"] <= 1 and done["positives"] > 0
    for kind in ("failed", "random"):
        assert done[f"fpr_{kind}"]["episodes"] >= 1 and 0 <= done[f"fpr_{kind}"]["episode_fpr"] <= 1
    by_task = done["successful_episodes_fired_near_end_by_task"]
    successes = sum(t["episodes"] for t in by_task.values())
    assert len(by_task) >= 2 and successes >= 2  # the synthetic tasks' successful held-out episodes
    fired = sum(t["fired"] * t["episodes"] for t in by_task.values())
    assert fired / successes == pytest.approx(done["successful_episodes_fired_near_end"])
    goal = metrics["goal_model"]
    assert goal["episodes"] >= 2
    for key in ("perceptual_goal", "perceptual_task_mean_final", "psnr_goal", "psnr_task_mean_final"):
        assert math.isfinite(goal[key])


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
        cfg = load_config(
            EvaluateWMConfig,
            "evaluate_wm",
            "tiny",
            [f"run={run}", f"dataset={other}", f"output={root / 'eval_na'}", "progress=false"],
        )
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


def test_controllability_sheet_shows_six_held_actions_from_two_tasks(evaluated):
    metrics = json.loads((evaluated / "metrics.json").read_text())
    sheet = metrics["controllability"]
    assert list(sheet["held_actions"]) == ["+dx", "-dx", "+dy", "-dy", "+dz", "close gripper"]
    assert len({c["task"] for c in sheet["contexts"]}) == 2
    assert "![controllability](controllability.png)" in (evaluated / "report.md").read_text()
    with Image.open(evaluated / "controllability.png") as png:
        sheet_png = np.asarray(png.convert("RGB"))
    cell = 32 * 2 + 2  # 32 px frames upscaled twice, 2 px gap
    assert sheet_png.shape[0] == 14 + 2 * 6 * cell  # header + rows: 2 contexts x 6 held actions
    left = sheet_png.shape[1] - (1 + SHEET_STEPS) * cell + 2  # after the row labels: context + dreamed steps
    finals = np.stack([sheet_png[14 + r * cell : 14 + r * cell + 64 : 2, -64::2] for r in range(12)]).reshape(2, 6, -1)
    contexts = np.stack(
        [sheet_png[14 + r * cell : 14 + r * cell + 64 : 2, left : left + 64 : 2] for r in range(12)]
    ).reshape(2, 6, -1)
    pairs = np.abs(finals[:, :, None].astype(float) - finals[:, None]).mean(-1).mean(0)
    assert sheet["mean_pairwise_divergence"] == pytest.approx(pairs[np.triu_indices(6, 1)].mean(), abs=1e-3)
    assert sheet["held_actions"]["+dx"]["divergence"] == pytest.approx(pairs[0].sum() / 5, abs=1e-3)
    change = np.abs(finals.astype(float) - contexts).mean((0, 2))
    assert sheet["held_actions"]["-dy"]["change"] == pytest.approx(change[3], abs=1e-3)
    assert left > 0 and (sheet_png[14:, left - 1] == 255).all()  # the gap between labels and frames is blank
    with Image.open(evaluated / "controllability.gif") as gif:
        assert gif.n_frames >= 2 and gif.size[1] == 14 + 2 * cell  # one row per context


def test_the_sheet_tells_an_action_blind_model_from_the_trained_one(trained, tmp_path):
    _, run, dataset = trained
    model = WorldModel.from_checkpoint(run / "world_model.safetensors")
    episodes = json.loads((run / "split.json").read_text())["held_out"]
    data = EpisodeDataset.open(dataset)
    trained_sheet = controllability_sheet(model, data, episodes, tmp_path / "trained", steps=SHEET_STEPS)
    with torch.no_grad():  # action values no longer reach the dynamics
        model.actions.value.zero_()
        model.actions.vector_mlp[0].weight.zero_()
    blind = controllability_sheet(model, data, episodes, tmp_path / "blind", steps=SHEET_STEPS)
    assert trained_sheet["mean_pairwise_divergence"] > 0.1
    assert blind["mean_pairwise_divergence"] == 0
    assert all(v["change"] > 0 for v in blind["held_actions"].values())  # it still dreams, the same for every action


def test_held_actions_follow_the_action_names():
    assert [label for label, _ in held_actions(["dx", "dy"])] == ["+dx", "-dx", "+dy", "-dy"]
    labelled = held_actions(["dx", "dy", "dz", "gripper"])
    assert labelled[-1][0] == "close gripper" and labelled[-1][1].tolist() == [0, 0, 0, 1]
    assert len(held_actions(["a", "b", "c", "d", "e"])) == 6


def test_change_rates_of_tokens_patches_and_pixels(trained, evaluated):
    _, run, _ = trained
    rates = json.loads((evaluated / "metrics.json").read_text())["change_rates"]
    assert 0 < rates["pixels"] <= rates["patches"] < 0.5  # a moving square on a static background
    assert rates["tokens"] == rates["tokens_per_frame"]  # the tiny preset holds no tokens (threshold -1)
    assert "Change between consecutive world-model frames" in (evaluated / "report.md").read_text()
    cfg = load_config(EvaluateWMConfig, "evaluate_wm", "tiny", [f"run={run}", f"output={run / 'eval_held'}"])
    ev = Evaluation(cfg)
    ev.model.cfg.token_hold_threshold = cfg.change_threshold
    held = ev.change_rates()
    # held ids change only in patches that changed (the synthetic frames are exact: a patch is static or moves)
    assert held["tokens"] <= held["patches"] == rates["patches"]
    assert held["tokens_per_frame"] == rates["tokens_per_frame"]


def test_a_run_without_a_goal_stage_reports_no_goal_model(trained, capsys):
    """A goal model left at its initial weights (goal_steps=0) used to be scored like a trained one."""
    root, run, dataset = trained
    no_goal = root / "run_no_goal"
    shutil.copytree(run, no_goal, ignore=shutil.ignore_patterns("optim-goal.safetensors", "eval*"))
    metrics = evaluate(no_goal, root / "eval_no_goal", "horizons=[1]")
    assert metrics["goal_model"] == {"episodes": 0, "trained": False}
    assert "None: the run trained no goal stage" in (root / "eval_no_goal/report.md").read_text()
    assert "goal model none (the run trained no goal stage)" in capsys.readouterr().out
