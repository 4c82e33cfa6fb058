"""`roboscape-r inspect`: validate a dataset on disk and print its summary."""

from __future__ import annotations

from dataclasses import dataclass

from roboscape_r_ros.config import option
from roboscape_r_ros.data.lerobot import DatasetSummary
from roboscape_r_ros.data.reader import EpisodeDataset


@dataclass
class InspectConfig:
    dataset: str = option("outputs/datasets/demo", help="dataset folder to validate and summarise")
    camera: str = option("", help="camera feature to read (e.g. observation.images.wrist) when there are several")
    decode: bool = option(True, help="also decode every frame (catches corrupt images, slower)")


def run_inspect(cfg: InspectConfig) -> DatasetSummary:
    dataset = EpisodeDataset.open(cfg.dataset, cfg.camera)
    if cfg.decode:
        dataset.load_arrays()
    return dataset.summary()
