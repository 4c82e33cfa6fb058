"""Episode dataset and training-window loader: write, open, decode and sampling speed.

A synthetic dataset (20 episodes x 150 frames, 64x64, camera-like frames: smooth background, a
moving block, sensor noise) is written to a temporary folder in the LeRobot v3 layout, opened,
decoded once, and sampled in batches of 32 windows of T=8 and T=16 frames. The batch time is set
against a training step measured in the same run (the `cpu` preset's tokenizer: forward, backward
and AdamW on 32 frames, median of 10 after 2 warm-up steps, torch's default threads):
``loader_share_of_step`` is the fraction of a step the loader would add if run inline.

    python bench/bench_loader.py          # prints JSON, also written to bench/results/
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_results import publish

from roboscape_r_ros.config import load_config
from roboscape_r_ros.data.lerobot import DatasetWriter, Episode
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.data.windows import WindowLoader
from roboscape_r_ros.world_model.config import WorldModelConfig
from roboscape_r_ros.world_model.model import WorldModel

EPISODES, LENGTH, SIZE, BATCH = 20, 150, 64, 32


def camera_like_episode(index: int, rng: np.random.Generator) -> Episode:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    background = np.stack([xx * 2, yy * 2 + 40, np.full_like(xx, 90 + 5 * index)], -1)  # [H,W,3]
    frames = np.repeat(background[None], LENGTH, axis=0)  # [T,H,W,3]
    for t, x in enumerate(np.linspace(4, SIZE - 16, LENGTH).astype(int)):
        frames[t, 24:36, x : x + 12] = (200, 60, 40)
    frames = np.clip(frames + rng.integers(-3, 4, frames.shape), 0, 255).astype(np.uint8)
    return Episode(
        frames=frames,
        actions=rng.uniform(-1, 1, (LENGTH, 4)).astype(np.float32),
        states=rng.standard_normal((LENGTH, 7)).astype(np.float32),
        done=np.exp(4 * (np.linspace(0, 1, LENGTH) - 1)).astype(np.float32),
        subtask_index=np.zeros(LENGTH, np.int64),
        task="pick-place-v3",
        instruction="Pick up the puck and place it at the goal.",
        success=True,
        kind="expert",
    )


def seconds(run) -> tuple[float, object]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def train_step_ms(frames: np.ndarray, steps: int = 10) -> float:
    """Median wall time of one tokenizer optimisation step of the cpu preset on BATCH frames [B,H,W,3]."""
    model = WorldModel(load_config(WorldModelConfig, "world_model", "cpu", [f"image_size={SIZE}"]))
    optimiser = torch.optim.AdamW(model.tokenizer.parameters(), lr=1e-3)
    batch = torch.from_numpy(frames[:BATCH])
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        loss, _ = model.tokenizer.loss(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[2:]) * 1e3)


def windows_per_second(dataset: EpisodeDataset, window: int, step_ms: float, batches: int = 300) -> dict[str, float]:
    loader = WindowLoader(dataset, window=window, batch_size=BATCH, seed=0)
    frames = dataset.load_arrays().frames
    size = BATCH * window  # frames per batch

    def sample_all() -> None:
        for _ in range(batches):
            loader.sample()  # dropped at once, as a training loop does

    def copy_all() -> None:  # baseline: one contiguous copy of the same number of bytes
        for i in range(batches):
            frames[i % 4 * size : (i % 4 + 1) * size].copy()

    sample_all(), copy_all()  # warm-up
    sample_s, _ = seconds(sample_all)
    copy_s, _ = seconds(copy_all)
    batch_ms = sample_s / batches * 1e3
    return {
        "batch_ms": round(batch_ms, 3),
        "windows_per_s": round(batches * BATCH / sample_s),
        "batch_mb": round(size * SIZE * SIZE * 3 / 2**20, 2),
        "vs_plain_copy": round(sample_s / copy_s, 2),
        "loader_share_of_step": round(batch_ms / step_ms, 4),
    }


def write_dataset(root: Path, episodes: list) -> Path:
    """The camera-like episodes as a dataset (64x64 corner2 frames, Meta-World's action names)."""
    with DatasetWriter(
        root,
        fps=30,
        camera="corner2",
        image_shape=(SIZE, SIZE, 3),
        action_names=["dx", "dy", "dz", "gripper"],
        state_names=[f"s{i}" for i in range(7)],
    ) as writer:
        for episode in episodes:
            writer.add_episode(episode)
    return root


def main() -> dict:
    rng = np.random.default_rng(0)
    episodes = [camera_like_episode(i, rng) for i in range(EPISODES)]
    frames = EPISODES * LENGTH
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "dataset"

        write_s, _ = seconds(lambda: write_dataset(root, episodes))
        open_s, dataset = seconds(lambda: EpisodeDataset.open(root))
        decode_s, arrays = seconds(dataset.load_arrays)
        assert np.array_equal(arrays.frames[:LENGTH], episodes[0].frames)  # lossless
        disk_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
        episode_s, _ = seconds(lambda: dataset.episode(EPISODES // 2))
        step_ms = train_step_ms(arrays.frames)
        report = {
            "bench": "loader",
            "machine": f"{platform.machine()}, {platform.python_version()}",
            "dataset": {
                "episodes": EPISODES,
                "frames": frames,
                "resolution": SIZE,
                "disk_mb": round(disk_mb, 2),
                "raw_mb": round(frames * SIZE * SIZE * 3 / 2**20, 2),
            },
            "write_s": round(write_s, 3),
            "write_frames_per_s": round(frames / write_s),
            "open_s": round(open_s, 4),
            "decode_all_s": round(decode_s, 3),
            "decode_frames_per_s": round(frames / decode_s),
            "one_episode_s": round(episode_s, 4),
            "train_step_ms": round(step_ms, 1),
            "windows": {f"B{BATCH}_T{t}": windows_per_second(dataset, t, step_ms) for t in (8, 16)},
        }
    return publish("bench_loader", report)


if __name__ == "__main__":
    main()
