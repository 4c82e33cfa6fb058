"""train-wm from an existing world model (``init``): its weights, and its split carried onto a dataset that
extends its own (the lab loop: the original episodes first, then a policy's rollouts).

The init run's held-out episodes stay held out and its training episodes stay training episodes (same
indices: they are the new dataset's first episodes); the episodes beyond them are split by the same
stratified rule, or all go to training. split.json's ``parent`` records the init run's dataset counts, so
a reader can tell the original prefix from the new episodes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from roboscape_r_ros.config import ConfigError
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.runs import RunError, flatten
from roboscape_r_ros.world_model.checkpoint import load_tensors
from roboscape_r_ros.world_model.config import WorldModelConfig
from roboscape_r_ros.world_model.data import stratified_split
from roboscape_r_ros.world_model.model import FORMAT
from roboscape_r_ros.world_model.train import MODEL_FILE

SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class InitModel:
    path: Path  # its world_model.safetensors
    tensors: dict[str, torch.Tensor]
    split: dict[str, Any] | None  # the split.json beside it (None: a bare checkpoint)


def load_init(init: str, cfg: WorldModelConfig) -> InitModel:
    """The checkpoint of a run folder (or a .safetensors file) whose model settings equal ``cfg``'s; its
    optimisation settings (model.train) may differ."""
    path = Path(init)
    path = path / MODEL_FILE if path.is_dir() else path
    tensors, meta = load_tensors(path, ("format", "config"))
    if meta["format"] != FORMAT or not isinstance(meta["config"], dict):
        raise ConfigError(f"init {path}: not a world model (format {meta['format']!r})")
    theirs = flatten({k: v for k, v in meta["config"].items() if k != "train"})
    ours = flatten(json.loads(json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k != "train"})))
    if changed := sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k)):
        key = changed[0]
        raise ConfigError(
            f"init {path}: model.{key}={theirs.get(key)!r} there, {ours.get(key)!r} here"
            f"{f' (+{len(changed) - 1} more)' if len(changed) > 1 else ''}: a fine-tune keeps the model settings"
        )
    split_path = path.parent / SPLIT_FILE
    try:
        split = json.loads(split_path.read_text()) if split_path.exists() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{split_path}: unreadable JSON ({err})") from None
    return InitModel(path, tensors, split)


def extended_split(
    parent: dict[str, Any], dataset: EpisodeDataset, fraction: float, seed: int, held_out_new: bool
) -> tuple[list[int], list[int]]:
    """(train, held_out) over ``dataset``: the parent split's on its first episodes, the rest split anew
    (or all train unless ``held_out_new``). The dataset must begin with the parent's episodes."""
    count, frames = parent["num_episodes"], parent["num_frames"]
    prefix = sum(meta.length for meta in dataset.episodes[:count])
    if dataset.num_episodes < count or prefix != frames:
        raise RunError(
            f"{dataset.root} does not extend the init run's dataset: its first {count} episodes hold {prefix} "
            f"frames, the init run's split.json says {count} episodes / {frames} frames"
        )
    if parent.get("camera", dataset.image_key) != dataset.image_key:
        raise RunError(f"init run trained on camera {parent['camera']}, {dataset.root} is read as {dataset.image_key}")
    new = dataset.episodes[count:]
    train, held_out = stratified_split(new, fraction, seed) if held_out_new else ([m.index for m in new], [])
    return sorted(parent["train"] + train), sorted(parent["held_out"] + held_out)
