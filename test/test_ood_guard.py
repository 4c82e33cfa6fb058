"""The out-of-domain guard: its gate (runtime/gates/ood_guard.py) and `roboscape-r calibrate-ood` on a world
model trained on the toy grid world, whose shadow-mode error must tell a changed floor colour from
its own scene."""

from __future__ import annotations

import json
import math

import pytest

from helpers.cli_runner import assert_one_line_error, cli
from helpers.toy_world import train_toy_world_model, write_toy_dataset
from roboscape_r_ros.commands.calibrate_ood import CalibrateOodConfig, frames_to_hold, run_calibrate_ood
from roboscape_r_ros.runtime.gates.ood_guard import OodGate


def test_the_gate_holds_after_a_run_of_high_errors_and_releases_after_a_run_of_low_ones():
    gate = OodGate(threshold=0.01, trip_after=3, release_after=2)
    assert [gate.update(e) for e in (0.02, 0.02, 0.005, 0.02, 0.02)] == [None] * 5  # a low one restarts the run
    assert gate.update(0.03) == "hold" and gate.holding
    assert [gate.update(e) for e in (0.005, 0.02, 0.005)] == [None] * 3 and gate.holding
    assert gate.update(0.01) == "release" and not gate.holding  # at the threshold counts as in domain
    assert [gate.update(math.nan) for _ in range(3)] == [None, None, "hold"]  # an unscorable error is no evidence


def test_a_hold_that_lasts_hold_timeout_s_ends_the_episode_until_a_new_one_starts():
    """A held arm may make no new frames to score: the hold must end some other way."""
    gate = OodGate(threshold=0.01, trip_after=1, release_after=1, hold_timeout_s=5.0)
    assert not gate.tick(100.0)  # nothing held: nothing to end
    assert gate.update(0.5) == "hold"
    assert not gate.tick(101.0) and not gate.tick(105.9)  # the clock starts at the first tick of the hold
    assert gate.tick(106.0) and gate.ended and gate.holding
    assert not gate.tick(200.0)  # once
    assert gate.update(0.0) is None and gate.holding  # the episode is over: errors no longer release it
    assert gate.new_episode() and not gate.holding and not gate.ended
    assert not gate.new_episode()  # nothing held: nothing ended
    assert gate.update(0.5) == "hold"  # afresh: the next episode's hold
    assert not gate.tick(300.0) and gate.update(0.0) == "release"  # a release before the timeout...
    assert gate.update(0.5) == "hold" and not gate.tick(306.0)  # ...starts the next hold's clock anew


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_bad_calibration_input_is_one_line(toy, tmp_path):
    run, same, _ = toy
    assert_one_line_error(cli("calibrate-ood", f"run={run}"), "needs run=<world model> and in_domain=")
    assert_one_line_error(cli("calibrate-ood", f"run={run}", f"in_domain=[{same}]", "changed=[oops]"), "name=dataset")
    assert_one_line_error(
        cli("calibrate-ood", f"run={run}", f"in_domain=[{tmp_path / 'none'}]"), str(tmp_path / "none")
    )
