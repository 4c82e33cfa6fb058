"""The one markdown of every report: tables, number formats and the one mark of a missing value, and
the world model's report sections written from fixed metrics (no model needed)."""

import math

import pytest

from roboscape_r_ros.commands.demo_report import world_model_figures
from roboscape_r_ros.markdown import MISSING, duration, measured, number, percent, table
from roboscape_r_ros.world_model.evaluation.metrics import json_safe
from roboscape_r_ros.world_model.evaluation.report import controllability_section, headline_horizon, open_loop_section


def test_a_table_has_a_header_a_rule_and_one_line_per_row():
    assert table(["h", "PSNR"], [[1, "23.46"], [8, MISSING]]) == [
        "| h | PSNR |",
        "|---|---|",
        "| 1 | 23.46 |",
        "| 8 | n/a |",
    ]
    assert table(["a", "b", "c"], []) == ["| a | b | c |", "|---|---|---|"]


@pytest.mark.parametrize("missing", [None, math.nan, math.inf, -math.inf])
def test_every_format_writes_a_missing_value_the_same_way(missing):
    assert not measured(missing)
    assert number(missing) == percent(missing) == number(missing, 1, " dB", sign=True) == MISSING


def test_numbers_percentages_and_durations():
    assert number(1.005, 1) == "1.0" and number(3) == "3.00" and number(0.25, 3) == "0.250"
    assert number(-0.123, unit=" dB", sign=True) == "-0.12 dB" and number(0.5, sign=True) == "+0.50"
    assert number(12.3456, unit="/255") == "12.35/255"
    assert percent(0.25) == "25%" and percent(0.1234, 1) == "12.3%" and percent(0.375, 1, sign=True) == "+37.5%"
    assert percent(-0.125, 1, sign=True, unit=" pts") == "-12.5 pts"
    assert percent(0.5) == f"{0.5:.0%}" and percent(2 / 3) == f"{2 / 3:.0%}"  # the same as Python's own
    assert duration(42.4) == "42 s" and duration(90) == "1.5 min"


def test_json_safe_writes_what_was_not_measured_as_null():
    assert json_safe({1: [math.nan, 2.0, math.inf], "x": (True,)}) == {"1": [None, 2.0, None], "x": [True]}


def horizon(psnr_gain: float, kinds: dict) -> dict:
    row = {key: 20.0 for key in ("psnr", "psnr_copy_last", "psnr_tokenizer_ceiling", "psnr_shuffled_actions")}
    row |= {key: 0.5 for key in ("ssim", "ssim_copy_last", "perceptual", "perceptual_copy_last")}
    row |= {"psnr_changed": math.nan, "psnr_changed_copy_last": 12.0, "changed_pixel_share": 0.0123}
    return row | {"windows": 4, "episodes": 2, "psnr_gain": psnr_gain, "dpsnr": 0.25, "by_kind": kinds}


def test_the_open_loop_section_marks_what_no_window_measured():
    metrics = {
        "perceptual_backend": "effnet",
        "config": {"change_threshold": 10},
        "open_loop": {
            "horizons": {
                1: horizon(1.5, {"expert": {"windows": 2, "psnr_gain": 1.0, "dpsnr": 0.5}}),
                8: horizon(-0.5, {}),
            }
        },
        "change_rates": {
            "frame_pairs": 0,
            **dict.fromkeys(("tokens", "tokens_per_frame", "patches", "pixels"), math.nan),
            "token_hold_threshold": -1,
            "change_threshold": 10,
        },
    }
    lines = open_loop_section(metrics)
    row = "| 1 | 4 (2) | 20.00 | 20.00 | 1.50 | 20.00 | 20.00 | 0.25 | 0.500 / 0.500 | 0.500 / 0.500 | "
    row += "n/a / 12.00 | 1.2% |"
    assert row in lines and lines[lines.index(row) - 1] == "|" + "---|" * 12
    assert lines[-4:] == ["| h | expert |", "|---|---|", "| 1 | 1.00 / 0.50 (n=2) |", "| 8 | n/a |"]
    assert "token ids the dynamics reads n/a (" in "\n".join(lines)  # no frame pairs: no rate, no "n/a%"
    assert headline_horizon(metrics["open_loop"]["horizons"]) == 8 and headline_horizon({1: {}, 4: {}}) == 4


def test_the_controllability_section_lists_each_held_action():
    sheet = {
        "contexts": [{"task": "reach-v3", "episode": 3, "start": 0}],
        "steps": 4,
        "control_steps": 8,
        "mean_pairwise_divergence": 1.234,
        "held_actions": {"+dx": {"divergence": 2.0, "change": math.nan}},
    }
    lines = controllability_section(sheet)
    assert "Mean over pairs: **1.23**." in lines[2] and lines[4:7] == [
        "| held action | divergence | change |",
        "|---|---|---|",
        "| +dx | 2.00 | n/a |",
    ]
    assert controllability_section({"contexts": []})[2] == "No scored episode holds a context window."


def test_the_demo_reads_its_world_model_figures_from_metrics_json():
    metrics = {
        "open_loop": {"horizons": {"1": {"psnr": 21.0, "psnr_copy_last": 20.5, "psnr_gain": 0.5, "dpsnr": None}}},
        "done_head": {"successful_episodes_fired_near_end_by_task": {"reach-v3": {"episodes": 4, "fired": 0.75}}},
        "controllability": {"mean_pairwise_divergence": None},
    }
    assert world_model_figures(metrics) == {
        "horizon": "1",
        "gain": "+0.50 dB",
        "copy": "21.00 vs 20.50 dB",
        "dpsnr": "n/a",
        "done_fired": "reach-v3 3/4 (75%)",
        "divergence": "n/a",
    }
    metrics["open_loop"]["horizons"] = {}
    assert world_model_figures(metrics)["horizon"] == world_model_figures(metrics)["gain"] == MISSING
