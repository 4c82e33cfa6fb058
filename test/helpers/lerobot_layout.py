"""A small dataset written the way LeRobot itself writes v3.0 datasets, not by this package's writer,
to test that the reader takes datasets from elsewhere.

The layout follows huggingface/lerobot, src/lerobot/datasets/utils.py (INFO_PATH, DEFAULT_DATA_PATH,
DEFAULT_VIDEO_PATH, DEFAULT_EPISODES_PATH, DEFAULT_TASKS_PATH, DEFAULT_FEATURES) and the episode
metadata that src/lerobot/datasets/lerobot_dataset.py writes (``tasks``, ``length``,
``data/chunk_index``, ``dataset_from_index``, ``videos/<key>/from_timestamp``, ...): two cameras,
``observation.images.front`` as PNG bytes in the parquet (dtype "image") and
``observation.images.wrist`` as one mp4 for all episodes (dtype "video"), a 6-joint arm's
``observation.state`` and ``action`` named as LeRobot's SO-100 follower names them, and none of this
package's own features (no done_label, subtask_index or episode labels).

The mp4 is AV1 encoded with PyAV's libsvtav1 as src/lerobot/datasets/video_utils.py
(encode_video_frames) does by default: yuv420p, g=2, crf=30; LeRobot v3 then concatenates the
episodes' videos into one file, as written here in one pass.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

FPS, SIZE = 10, 32
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
NAMES = [f"{joint}.pos" for joint in JOINTS]
TASKS = ["pick up the red cube", "push the red cube left"]
FRONT, WRIST = "observation.images.front", "observation.images.wrist"


def frames_of(positions: np.ndarray, view: str, floor: int) -> np.ndarray:
    """uint8 [T,32,32,3]: a red square at ``positions`` [T,2] px on a grey floor, seen from the front
    or (mirrored) from the wrist."""
    frames = np.full((len(positions), SIZE, SIZE, 3), floor, np.uint8)
    for frame, (x, y) in zip(frames, positions):
        frame[y : y + 8, x : x + 8] = (230, 50, 40)
    return frames if view == "front" else frames[:, :, ::-1]


def make_episodes(lengths=(12, 9, 15), seed: int = 0) -> list[dict[str, np.ndarray | str]]:
    rng = np.random.default_rng(seed)
    episodes = []
    for i, length in enumerate(lengths):
        positions = np.clip(np.cumsum(rng.integers(-2, 3, (length, 2)), 0) + 12, 0, SIZE - 8)
        joints = np.cumsum(rng.normal(0, 0.05, (length, 6)), 0)
        episodes.append(
            {
                "front": frames_of(positions, "front", 40),
                "wrist": frames_of(positions, "wrist", 70 + 50 * i),  # each episode its own floor
                "state": joints.astype(np.float32),
                "action": (joints + rng.normal(0, 0.01, joints.shape)).astype(np.float32),
                "task": TASKS[i % len(TASKS)],
            }
        )
    return episodes


def png(frame: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="PNG")  # as HF datasets embeds an Image feature
    return out.getvalue()


def vector_feature(names: list[str], style: str) -> dict:
    """``style``: "list" (LeRobot v3 recordings), "motors" (v2.x conversions keep {"motors": [...]}) or
    "none" (names: null)."""
    named = {"list": names, "motors": {"motors": names}, "none": None}[style]
    return {"dtype": "float32", "shape": [len(names)], "names": named}


def write_lerobot_dataset(
    root: Path,
    episodes: list[dict],
    *,
    with_state: bool = True,
    names: str = "list",
    wrist: bool = True,
    success: list[np.ndarray] | None = None,
) -> Path:
    """``episodes`` from ``make_episodes`` as a LeRobot v3.0 dataset under ``root``; ``success``: each episode's
    per-frame flags, written as LeRobot's ``next.success`` (a bool feature, as in lerobot/pusht)."""
    scalar = {"shape": [1], "names": None}
    image_names = ["height", "width", "channels"]
    features = {FRONT: {"dtype": "image", "shape": [SIZE, SIZE, 3], "names": image_names}}
    if wrist:
        features[WRIST] = {
            "dtype": "video",
            "shape": [SIZE, SIZE, 3],
            "names": image_names,
            "info": {
                "video.height": SIZE,
                "video.width": SIZE,
                "video.codec": "av1",
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": FPS,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    if with_state:
        features["observation.state"] = vector_feature(NAMES, names)
    features["action"] = vector_feature(NAMES, names)
    if success is not None:
        features["next.success"] = {"dtype": "bool", **scalar}
    features |= {
        "timestamp": {"dtype": "float32", **scalar},
        "frame_index": {"dtype": "int64", **scalar},
        "episode_index": {"dtype": "int64", **scalar},
        "index": {"dtype": "int64", **scalar},
        "task_index": {"dtype": "int64", **scalar},
    }
    tasks = list(dict.fromkeys(e["task"] for e in episodes))
    total = sum(len(e["action"]) for e in episodes)

    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    info = {
        "codebase_version": "v3.0",
        "robot_type": "so100_follower",
        "total_episodes": len(episodes),
        "total_frames": total,
        "total_tasks": len(tasks),
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": FPS,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4" if wrist else None,
        "features": features,
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    pq.write_table(
        pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": tasks}), root / "meta/tasks.parquet"
    )

    columns: dict[str, list] = {key: [] for key in features if key != WRIST}
    rows, start, timestamp = [], 0, 0.0
    for i, e in enumerate(episodes):
        length = len(e["action"])
        columns[FRONT] += [{"bytes": png(f), "path": None} for f in e["front"]]
        if with_state:
            columns["observation.state"] += list(e["state"])
        columns["action"] += list(e["action"])
        if success is not None:
            columns["next.success"] += [bool(s) for s in success[i]]
        columns["timestamp"] += list(np.arange(length, dtype=np.float32) / FPS)
        columns["frame_index"] += list(range(length))
        columns["episode_index"] += [i] * length
        columns["index"] += list(range(start, start + length))
        columns["task_index"] += [tasks.index(e["task"])] * length
        row = {
            "episode_index": i,
            "tasks": [e["task"]],
            "length": length,
            "data/chunk_index": 0,
            "data/file_index": 0,
            "dataset_from_index": start,
            "dataset_to_index": start + length,
        }
        if wrist:
            row |= {
                f"videos/{WRIST}/chunk_index": 0,
                f"videos/{WRIST}/file_index": 0,
                f"videos/{WRIST}/from_timestamp": timestamp,
                f"videos/{WRIST}/to_timestamp": timestamp + length / FPS,
            }
        rows.append(row | {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        start, timestamp = start + length, timestamp + length / FPS

    vector = pa.list_(pa.float32(), len(NAMES))
    types = {
        FRONT: pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
        "observation.state": vector,
        "action": vector,
        "timestamp": pa.float32(),
        "next.success": pa.bool_(),
    }
    table = pa.table({key: pa.array(values, types.get(key, pa.int64())) for key, values in columns.items()})
    pq.write_table(table, root / "data/chunk-000/file-000.parquet")
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")

    if wrist:
        video = root / f"videos/{WRIST}/chunk-000/file-000.mp4"
        video.parent.mkdir(parents=True)
        with av.open(str(video), "w") as container:
            stream = container.add_stream("libsvtav1", FPS, options={"g": "2", "crf": "30"})
            stream.pix_fmt, stream.width, stream.height = "yuv420p", SIZE, SIZE
            for e in episodes:
                for frame in e["wrist"]:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
    stats = {"action": {"min": np.concatenate([e["action"] for e in episodes]).min(0).tolist()}}
    (root / "meta/stats.json").write_text(json.dumps(stats))
    return root
