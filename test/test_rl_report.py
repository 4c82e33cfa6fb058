"""The paired significance test of the evaluation report."""

import pytest

from roboscape_r_ros.rl.report import EpisodeResult, mcnemar, success_tables


def results(actor: str, outcomes: list[bool]) -> list[EpisodeResult]:
    return [EpisodeResult(actor, "reach-v3", "table-colour", 0, i, 100 + i, ok, 10) for i, ok in enumerate(outcomes)]


def test_mcnemar_counts_discordant_pairs_and_gives_the_exact_binomial_p():
    ours = results("ours", [True] * 10 + [False] * 2 + [True] * 5)
    base = results("base", [False] * 10 + [True] * 2 + [True] * 5)
    test = mcnemar(ours, base)
    assert (test.ours_only, test.baseline_only) == (10, 2)
    assert test.p_value == pytest.approx(2 * (1 + 12 + 66) / 2**12)  # P(X <= 2), X ~ Bin(12, 1/2), two-sided


def test_mcnemar_pairs_by_episode_identity_not_by_order():
    ours = results("ours", [True, False, False])
    base = list(reversed(results("base", [True, False, False])))
    assert mcnemar(ours, base).p_value == 1.0 and mcnemar(ours, base).ours_only == 0


def test_report_lists_the_paired_test_per_baseline():
    lines = "\n".join(success_tables(results("ours", [True] * 8) + results("bc", [False] * 8), ours=["ours"]))
    assert "8 / 0, p = 0.00781" in lines


def test_two_policies_of_ours_are_each_compared_with_the_baselines_only():
    episodes = results("ours", [True] * 8) + results("ours-long", [True] * 4 + [False] * 4) + results("bc", [False] * 8)
    lines = success_tables(episodes, ours=["ours", "ours-long"])
    assert "### Relative improvement of ours" in lines and "### Relative improvement of ours-long" in lines
    comparisons = [line.split(" | ")[:2] for line in lines if " pts | " in line]
    assert comparisons == [["| bc", "+100.0 pts"], ["| bc", "+50.0 pts"]]
