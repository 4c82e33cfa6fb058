"""The report statistics against known values."""

import numpy as np
import pytest

from roboscape_r_ros.stats import auroc, mcnemar_p, rankdata, roc_curve, spearman, wilson_interval


def test_rank_statistics():
    x = np.array([3.0, 1.0, 2.0, 2.0, 5.0])
    np.testing.assert_allclose(rankdata(x), [4, 1, 2.5, 2.5, 5])
    assert spearman(np.arange(6), np.arange(6) ** 3) == pytest.approx(1.0)
    assert spearman(np.arange(6), -np.arange(6)) == pytest.approx(-1.0)
    assert np.isnan(spearman(np.ones(5), np.arange(5)))
    assert np.isnan(spearman(np.arange(2), np.arange(2)))
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 30).astype(float), rng.normal(size=30)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)


def test_auroc_known_values():
    assert auroc([3, 4], [1, 2]) == 1.0 and auroc([1, 2], [3, 4]) == 0.0
    assert auroc([1], [1]) == 0.5 and auroc([2, 2], [2, 2, 2]) == 0.5
    assert np.isnan(auroc([], [1])) and np.isnan(auroc([1], []))


def test_auroc_matches_pair_counting():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200).astype(float)  # many ties
    labels = rng.random(200) < 0.3
    pos, neg = scores[labels], scores[~labels]
    pairs = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
    assert auroc(pos, neg) == pytest.approx(pairs)


def test_roc_curve_runs_from_the_origin_to_one_one():
    fpr, tpr = roc_curve(np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, False, True, False]))
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])


def test_wilson_interval_known_values():
    np.testing.assert_allclose(wilson_interval(0, 10), (0.0, 0.2775), atol=1e-4)
    np.testing.assert_allclose(wilson_interval(5, 10), (0.2366, 0.7634), atol=1e-4)
    np.testing.assert_allclose(wilson_interval(10, 10), (0.7225, 1.0), atol=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_mcnemar_exact_p():
    assert mcnemar_p(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 2**12)  # P(X <= 2), X ~ Bin(12, 1/2), two-sided
    assert mcnemar_p(2, 10) == mcnemar_p(10, 2)
    assert mcnemar_p(3, 0) == 0.25 and mcnemar_p(8, 0) == pytest.approx(2 / 2**8)
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(1, 0) == 1.0 and mcnemar_p(3, 3) == 1.0
