"""`roboscape-r evaluate-wm` on a tiny train-wm run: the report, its tables, plots, GIF and metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from roboscape_r_ros import cli
from roboscape_r_ros.world_model.evaluate import auroc
from wm_synthetic import write_dataset


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    dataset = write_dataset(root / "synthetic", seed=1)
    run = root / "run"
    steps = ["model.train.tokenizer_steps=40", "model.train.action_steps=40", "model.train.goal_steps=10"]
    assert cli.main(["train-wm", "--preset", "tiny", f"dataset={dataset}", f"run={run}", "threads=1",
                     "progress=false", "held_out_fraction=0.3", *steps]) == 0
    assert cli.main(["evaluate-wm", "--preset", "tiny", f"run={run}", "progress=false"]) == 0
    return run / "eval"


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
