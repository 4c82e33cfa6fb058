"""Does a dataset written by this package load in LeRobot's own ``LeRobotDataset``, and does LeRobot's
QUANTILES normalisation read its statistics?

    python tools/lerobot_interop.py write OUT      # this package's venv: OUT/png, OUT/mp4 and OUT/expected.npz
    python tools/lerobot_interop.py load OUT       # a venv with lerobot: open both, compare frames with expected
    python tools/lerobot_interop.py quantiles DIR  # a venv with lerobot: normalise DIR (e.g. written by
                                                   # `roboscape-r collect --preset tiny`) with QUANTILES

tools/check_lerobot_interop.sh builds the lerobot venv and runs both. ``write`` imports this package and
no lerobot; ``load`` imports lerobot and not this package, so each side runs in its own environment.
The frames are 48x64 (height != width catches a transposed layout) and differ per frame.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

FPS, HEIGHT, WIDTH = 10, 48, 64
LENGTHS = (12, 7, 15)
ACTIONS, STATES = ["dx", "dy", "dz", "gripper"], ["hand_x", "hand_y", "hand_z"]
TASKS = ["reach the red marker", "push the block"]
CHECKED = [0, 5, 11, 12, 18, 19, 33]  # global frame indices: episode starts and ends included
# LeRobot's default decoder; it needs FFmpeg's shared libraries installed system-wide (lerobot 0.4's
# other choice, pyav, goes through torchvision.io.VideoReader, which torchvision 0.29 no longer has)
VIDEO_BACKEND = os.environ.get("LEROBOT_VIDEO_BACKEND", "torchcodec")


def episodes() -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for e, length in enumerate(LENGTHS):
        frames = np.zeros((length, HEIGHT, WIDTH, 3), np.uint8)
        for t in range(length):
            frames[t, :, :, e] = 60
            frames[t, 8 + t : 16 + t, 4 * t : 4 * t + 10] = (230, 50, 40)  # a square that moves
        out.append(
            {
                "frames": frames,
                "actions": rng.uniform(-1, 1, (length, len(ACTIONS))).astype(np.float32),
                "states": rng.normal(0, 1, (length, len(STATES))).astype(np.float32),
                "task": TASKS[e % 2],
            }
        )
    return out


def write(out: Path) -> None:
    from roboscape_r_ros.data.done_labels import done_labels
    from roboscape_r_ros.data.lerobot import DatasetWriter, Episode

    eps = episodes()
    for name, video in (("png", False), ("mp4", True)):
        settings = dict(fps=FPS, camera="front", image_shape=(HEIGHT, WIDTH, 3), video=video)
        with DatasetWriter(out / name, action_names=ACTIONS, state_names=STATES, **settings) as writer:
            for e, ep in enumerate(eps):
                length = len(ep["actions"])
                done, subtask = done_labels(length, [length - 2])
                writer.add_episode(
                    Episode(
                        ep["frames"],
                        ep["actions"],
                        ep["states"],
                        done,
                        subtask,
                        f"task-{e % 2}",
                        ep["task"],
                        True,
                        "expert",
                    )
                )
    frames = np.concatenate([ep["frames"] for ep in eps])
    actions = np.concatenate([ep["actions"] for ep in eps])
    states = np.concatenate([ep["states"] for ep in eps])
    tasks = np.array([ep["task"] for ep in eps for _ in ep["actions"]])
    np.savez(out / "expected.npz", frames=frames, actions=actions, states=states, tasks=tasks)
    print(f"wrote {out / 'png'} and {out / 'mp4'}: {len(eps)} episodes, {len(frames)} frames of {WIDTH}x{HEIGHT}")


def load(out: Path) -> int:
    import lerobot
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    expected = np.load(out / "expected.npz")
    print(f"lerobot {getattr(lerobot, '__version__', '?')}, torch {torch.__version__}, video backend {VIDEO_BACKEND}")
    failures = 0
    # mp4 is lossy (measured: <= 0.0042 mean error); the neighbouring frame of the same episode is
    # 0.0077-0.0097 away, another episode's much further (another floor colour)
    for name, tolerance in (("png", 0.0), ("mp4", 0.006)):
        dataset = LeRobotDataset("roboscape/interop", root=out / name, video_backend=VIDEO_BACKEND)
        print(f"\n{name}: LeRobotDataset: {dataset.num_episodes} episodes, {len(dataset)} frames, fps {dataset.fps}")
        print(f"  camera keys {dataset.meta.camera_keys}; features {list(dataset.meta.features)}")
        for i in CHECKED:
            item = dataset[i]
            image = item["observation.images.front"]  # float [3,H,W] in [0, 1]
            truth = torch.from_numpy(expected["frames"][i]).permute(2, 0, 1).float() / 255
            error = float((image - truth).abs().mean()) if image.shape == truth.shape else float("inf")
            same = (
                torch.equal(item["action"], torch.from_numpy(expected["actions"][i]))
                and torch.equal(item["observation.state"], torch.from_numpy(expected["states"][i]))
                and item["task"] == str(expected["tasks"][i])
                and error <= tolerance
            )
            failures += not same
            print(
                f"  [{i:2d}] episode {int(item['episode_index'])} frame {int(item['frame_index']):2d} "
                f"image {tuple(image.shape)} mean |error| {error:.4f}, action/state/task "
                f"{'match' if same else 'DIFFER'}: {item['task']!r}"
            )
    print(f"\n{'OK' if not failures else f'{failures} frames differ'}")
    return int(failures > 0)


def quantiles(root: Path) -> int:
    """LeRobot's own NormalizerProcessorStep with NormalizationMode.QUANTILES on every visual, state and
    action feature, as a policy's pre-processor applies it to a batch: the output of the whole dataset is
    finite, and each feature's q01 and q99 (meta/stats.json) come out at -1 and +1."""
    import torch
    from lerobot.configs.types import FeatureType, NormalizationMode
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.datasets.utils import dataset_to_policy_features
    from lerobot.processor import DataProcessorPipeline
    from lerobot.processor.normalize_processor import NormalizerProcessorStep
    from torch.utils.data import DataLoader

    dataset = LeRobotDataset("roboscape/collected", root=root, video_backend=VIDEO_BACKEND)
    features = dataset_to_policy_features(dataset.meta.features)
    modes = {kind: NormalizationMode.QUANTILES for kind in (FeatureType.VISUAL, FeatureType.STATE, FeatureType.ACTION)}
    normalise = DataProcessorPipeline([NormalizerProcessorStep.from_lerobot_dataset(dataset, features, modes)])
    keys = [k for k, f in features.items() if f.type in modes]
    batch = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    out = normalise(batch)
    stats = dataset.meta.stats
    ends = normalise({k: torch.stack([torch.as_tensor(stats[k][q]).float() for q in ("q01", "q99")]) for k in keys})
    print(f"{root}: {dataset.num_episodes} episodes, {len(dataset)} frames; QUANTILES on {keys}")
    failures = 0
    for key in keys:
        x, (low, high) = out[key], ends[key].reshape(2, -1).numpy()
        # a constant dimension (q01 == q99) has no scale: LeRobot divides by eps and both map to -1
        flat = np.asarray(stats[key]["q99"]).reshape(-1) == np.asarray(stats[key]["q01"]).reshape(-1)
        ok = bool(torch.isfinite(x).all()) and np.allclose(low, -1, atol=1e-4)
        ok = ok and np.allclose(high[~flat], 1, atol=1e-4)
        # stats on another scale than the frames (0-255 against LeRobot's 0-1 images) put almost nothing
        # inside; the dataset's quantiles are its episodes' averaged (LeRobot's aggregate), so not 98 %
        inside = float(((x >= -1) & (x <= 1)).float().mean())
        ok = ok and inside >= 0.5
        failures += not ok
        print(
            f"  {key}: output {tuple(x.shape)} {'finite' if torch.isfinite(x).all() else 'NOT FINITE'}, "
            f"range [{float(x.min()):.3f}, {float(x.max()):.3f}], {100 * inside:.1f}% of values in [-1, 1]; "
            f"q01 -> {low.min():.4f}..{low.max():.4f}, q99 -> {high.min():.4f}..{high.max():.4f}"
            f"{f' ({int(flat.sum())} constant)' if flat.any() else ''}: {'ok' if ok else 'WRONG'}"
        )
    print(f"\n{'OK' if not failures else f'{failures} features wrong'}")
    return int(failures > 0)


if __name__ == "__main__":
    commands = {"write": write, "load": load, "quantiles": quantiles}
    if len(sys.argv) != 3 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    sys.exit(commands[sys.argv[1]](Path(sys.argv[2])))
