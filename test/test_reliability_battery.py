"""The reliability battery (bench/reliability/) in its --quick mode: each scenario for a few seconds,
on the real graph, so the scripts cannot rot. The figures of docs/results/reliability.md come from
the full runs; here only what must hold at any duration is asserted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[1]


def quick(scenario: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "reliability" / "run.py"), scenario, "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    # a scenario's part that could not run says why (and the graph's last log lines) in its own "error"
    failed = {name: part for name, part in report.items() if isinstance(part, dict) and "error" in part}
    assert "error" not in report and not failed, failed or report
    return report


def test_soak_counts_answers_and_samples_every_node():
    report = quick("soak")
    assert report["frames_sent"] > 100 and report["answered_pct"] > 50, report
    assert set(report["rss_mib"]) == {"camera_ingest", "policy_controller", "launch"}
    assert report["graph_still_running"] and report["latency"]["p50_ms"] > 0


def test_a_killed_controller_stops_the_graph_and_a_restarted_one_starts_from_rest():
    report = quick("kill_controller")
    graph = report["graph_policy"]
    assert not graph["respawned"] and graph["nodes_left_running"] == [] and graph["launcher_exit_status"] == 2
    restart = report["restart"]
    assert all(r["rate_limiter_from_rest"] and r["steps_restarted"] for r in restart["restarts"]), restart
    assert restart["latched_estop_summary"]["conclusive"] >= 1, restart  # default parameters
    assert all(r["kept"] for r in restart["latched_estop"]) and restart["volatile_estop"]["kept"], restart


def test_a_killed_dreamer_is_respawned_while_the_controller_holds():
    report = quick("kill_dreamer")
    assert report["controller_same_process"] and report["reward_publisher_same_process"], report
    assert report["actions_while_dreamer_down"] == 0 and report["controller_hold_logged_s"] is not None
    assert report["dreamer_restarted_s"] >= 2.0 and report["first_action_after_kill_s"] > 0


def test_sigint_while_recording_keeps_every_finished_episode():
    report = quick("record_sigint")
    assert report["episodes_finished_before_sigint"] >= 1 and report["finished_episodes_lost"] == 0, report
    assert report["inspect_exit_status"] == 0 and report["launcher_exit_status"] == 0
    assert report["finished_frames_recorded"] == report["finished_frames_expected"], report


def test_a_flood_of_bad_frames_leaves_every_node_up_and_good_frames_answered():
    report = quick("flood")
    assert all(report["nodes_same_process"].values()) and report["graph_running"], report
    assert report["good_frames"]["during"]["answered"] > 0 and report["good_frames"]["after"]["answered"] > 0
    assert report["flood"]["messages_per_s"] > 100 and report["log_lines_during_flood"]["camera_ingest"] < 40
