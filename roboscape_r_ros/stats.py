"""Small statistics of the reports: ranks, Spearman correlation, AUROC, Wilson intervals, exact McNemar."""

from __future__ import annotations

import math

import numpy as np


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy.stats.rankdata's default)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation; NaN when fewer than 3 points or either side is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 3:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy))


def auroc(positive: np.ndarray | list[float], negative: np.ndarray | list[float]) -> float:
    """Area under the ROC curve: P(a random positive scores above a random negative), ties counting half;
    NaN if a side is empty. From the positives' rank sum (Mann-Whitney U), so n log n for many frames."""
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    pos, neg = len(positive), len(negative)
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([positive, negative]))
    return float((ranks[:pos].sum() - pos * (pos + 1) / 2) / (pos * neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates [1 + distinct scores], thresholds from the highest score down."""
    thresholds = np.unique(scores)[::-1]
    labels = np.asarray(labels, bool)
    fpr = [0.0] + [float((scores[~labels] >= t).mean()) for t in thresholds]
    tpr = [0.0] + [float((scores[labels] >= t).mean()) for t in thresholds]
    return np.asarray(fpr), np.asarray(tpr)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact McNemar p-value of paired binary outcomes: a two-sided binomial test of the discordant
    pairs (``only_a`` solved by A alone, ``only_b`` by B alone); 1.0 without any."""
    n = only_a + only_b
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n if n else 0.5
    return min(1.0, 2 * tail)
