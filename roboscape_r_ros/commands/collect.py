"""`roboscape-r collect`: scripted-expert, noisy, failed and random Meta-World episodes into a new dataset.

    roboscape-r collect --preset tiny output=outputs/datasets/tiny

What an episode is and how its kind is drawn: data/collect.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from roboscape_r_ros.data.collect import SCENE_STREAM, CollectConfig, episode_kinds, record_episode, task_rng
from roboscape_r_ros.data.lerobot import DatasetSummary, DatasetWriter
from roboscape_r_ros.envs.metaworld_env import ACTION_NAMES, STATE_NAMES, PixelMetaWorldEnv


def run_collect(cfg: CollectConfig, progress: bool = True) -> DatasetSummary:
    """Record every task's episodes into a new dataset at ``cfg.output``."""
    size = cfg.env.resolution
    writer = DatasetWriter(
        Path(cfg.output),
        fps=cfg.fps,
        camera=cfg.env.camera,
        image_shape=(size, size, 3),
        action_names=ACTION_NAMES,
        state_names=STATE_NAMES,
        video=cfg.video,
        robot_type="sawyer",
        overwrite=cfg.overwrite,
    )
    bar = tqdm(total=len(cfg.env.tasks) * cfg.episodes_per_task, unit="episode", disable=not progress)
    with writer, bar:
        for task in cfg.env.tasks:
            rng = task_rng(cfg, task)
            episode_seeds = rng.integers(2**31, size=cfg.episodes_per_task).tolist()
            kinds = episode_kinds(cfg, rng)
            env = PixelMetaWorldEnv(task, cfg.env)
            try:
                successes = 0
                for kind, seed in zip(kinds, episode_seeds):
                    if cfg.scene_draws.active:
                        env.set_scene(cfg.scene_draws.draw(cfg.env.scene, np.random.default_rng((seed, SCENE_STREAM))))
                    episode = record_episode(env, kind, cfg, seed)
                    writer.add_episode(episode)
                    successes += episode.success
                    bar.set_postfix(task=task, successes=successes)
                    bar.update()
            finally:
                env.close()
        return writer.finalize()
