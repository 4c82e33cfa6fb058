"""Normalisation statistics in LeRobot's stats.json form: {feature: {min, max, mean, std, count, q01, q10, q50,
q90, q99}}. The quantiles are what LeRobot 0.4's QUANTILES normalisation reads; like LeRobot (compute_stats.py)
a dataset's quantile is the count-weighted mean of its episodes' quantiles, an approximation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Stats = dict[str, np.ndarray]
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}  # LeRobot 0.4's names


def feature_stats(values: np.ndarray) -> Stats:
    """Stats over the frame axis of ``[T,D]`` values; each has shape [D], count has shape [1]."""
    return {
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": values.mean(axis=0, dtype=np.float64),
        "std": values.std(axis=0, dtype=np.float64),
        "count": np.array([len(values)]),
        **{name: np.quantile(values, q, axis=0) for name, q in QUANTILES.items()},
    }


def image_stats(frames: np.ndarray) -> Stats:
    """Per-channel stats of ``uint8 [T,H,W,3]`` frames scaled to [0,1], shaped [3,1,1] as LeRobot's."""
    stats = feature_stats(frames.reshape(-1, frames.shape[-1]))
    scaled = {name: (value / 255.0).reshape(-1, 1, 1) for name, value in stats.items() if name != "count"}
    return {**scaled, "count": np.array([len(frames)])}


def aggregate_stats(parts: Sequence[Stats]) -> Stats:
    """Stats of the union of ``parts`` (count-weighted mean and quantiles, pooled variance)."""
    counts = np.array([part["count"][0] for part in parts], np.float64)
    means = np.stack([part["mean"] for part in parts])
    stds = np.stack([part["std"] for part in parts])
    weights = (counts / counts.sum()).reshape(-1, *[1] * (means.ndim - 1))
    mean = (weights * means).sum(axis=0)
    variance = (weights * (stds**2 + (means - mean) ** 2)).sum(axis=0)
    return {
        "min": np.min([part["min"] for part in parts], axis=0),
        "max": np.max([part["max"] for part in parts], axis=0),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": np.array([int(counts.sum())]),
        **{name: (weights * np.stack([part[name] for part in parts])).sum(axis=0) for name in QUANTILES},
    }
