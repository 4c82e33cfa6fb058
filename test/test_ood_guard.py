"""The out-of-domain guard: its gate (runtime/ood_guard.py) and `roboscape-r calibrate-ood` on a world
model trained on the toy grid world, whose shadow-mode error must tell a changed floor colour from
its own scene."""

from __future__ import annotations

import json
import math

import pytest
from cli_runner import assert_one_line_error, cli
from toy_world import train_toy_world_model, write_toy_dataset

from roboscape_r_ros.runtime.ood_calibration import CalibrateOodConfig, frames_to_hold, run_calibrate_ood
from roboscape_r_ros.runtime.ood_guard import OodGate


def test_the_gate_holds_after_a_run_of_high_errors_and_releases_after_a_run_of_low_ones():
    gate = OodGate(threshold=0.01, trip_after=3, release_after=2)
    assert [gate.update(e) for e in (0.02, 0.02, 0.005, 0.02, 0.02)] == [None] * 5  # a low one restarts the run
    assert gate.update(0.03) == "hold" and gate.holding
    assert [gate.update(e) for e in (0.005, 0.02, 0.005)] == [None] * 3 and gate.holding
    assert gate.update(0.01) == "release" and not gate.holding  # at the threshold counts as in domain
    assert [gate.update(math.nan) for _ in range(3)] == [None, None, "hold"]  # an unscorable error is no evidence


def test_frames_to_hold_counts_scored_frames():
    assert frames_to_hold([0.0, 0.5, 0.5], threshold=0.1, trip_after=2) == 3
    assert frames_to_hold([0.5, 0.0, 0.5], threshold=0.1, trip_after=2) is None


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("ood")
    _, run = train_toy_world_model(root)
    kinds = {"expert": 8, "noisy": 8, "random": 8}
    same = write_toy_dataset(root / "same_scene", kinds, seed=1)
    floor = write_toy_dataset(root / "bright_floor", kinds, seed=1, background=110)
    return run, same, floor


def test_calibration_separates_a_changed_scene_and_proposes_a_threshold(toy, tmp_path):
    run, same, floor = toy
    cfg = CalibrateOodConfig(
        run=str(run), in_domain=[str(same)], changed=[f"floor={floor}"], output=str(tmp_path), progress=False
    )
    print(run_calibrate_ood(cfg))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sets"]["in-domain"]["episodes"] == 24 and report["sets"]["floor"]["scored_frames"] > 100
    assert report["auroc"]["floor"] > 0.95
    assert report["threshold"] == pytest.approx(report["sets"]["in-domain"]["p99"])
    # held as early as the gate can (trip_after 3); the episodes not held end before 3 scored frames
    assert report["guard"]["floor"]["median_frames_to_hold"] == 3 and report["guard"]["floor"]["held_episodes"] >= 0.7
    assert report["guard"]["in-domain"]["held_episodes"] <= 0.1
    assert "| floor | 24 |" in (tmp_path / "report.md").read_text()


def test_bad_calibration_input_is_one_line(toy, tmp_path):
    run, same, _ = toy
    assert_one_line_error(cli("calibrate-ood", f"run={run}"), "needs run=<world model> and in_domain=")
    assert_one_line_error(cli("calibrate-ood", f"run={run}", f"in_domain=[{same}]", "changed=[oops]"), "name=dataset")
    assert_one_line_error(
        cli("calibrate-ood", f"run={run}", f"in_domain=[{tmp_path / 'none'}]"), str(tmp_path / "none")
    )
