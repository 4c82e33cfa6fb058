"""Read and validate an episode dataset in the LeRobot v3.0 layout.

Two kinds of dataset open:
- written by ``lerobot.DatasetWriter``: checked strictly against the features this package writes,
  with its done labels, sub-task indices and episode labels;
- written by LeRobot or anyone else ("foreign"): any camera key of dtype image or video (chosen with
  ``camera=`` when there are several), any action size and names, ``observation.state`` if present
  (else no state). Their episodes carry no success or done labels (they train the world model's
  dynamics, not its done head) unless the dataset has LeRobot's per-frame ``next.success``: then an
  episode succeeded where any frame says so, and its done labels rise to its first such frame
  (data/done_labels.py, one sub-task). Their sub-task index is 0 and their kind is "expert" (what
  ``import-bag`` assumes of demonstrations too); task and instruction are the LeRobot task string.

``EpisodeDataset.open`` checks the metadata and every referenced file up front (parquet footers,
not frames), so a broken dataset fails at open with the file named, not in the middle of training.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from roboscape_r_ros.data.codecs import CodecError, decode_png, read_mp4
from roboscape_r_ros.data.done_labels import done_labels
from roboscape_r_ros.data.lerobot import (
    CODEBASE_VERSION,
    EPISODES_DIR,
    IMAGE_PREFIX,
    INFO_PATH,
    KINDS,
    STATS_PATH,
    TASKS_PATH,
    DatasetCorruptError,
    DatasetNotFoundError,
    DatasetSchemaError,
    DatasetSummary,
    DatasetVersionError,
    Episode,
    EpisodeMeta,
    arrow_schema,
    build_features,
    numpy_column,
)

_INFO_TYPES = {
    "codebase_version": str,
    "fps": int,
    "total_episodes": int,
    "total_frames": int,
    "total_tasks": int,
    "chunks_size": int,
    "data_path": str,
    "features": dict,
}
_EPISODE_COLUMNS = [
    "episode_index",
    "tasks",
    "length",
    "data/chunk_index",
    "data/file_index",
    "dataset_from_index",
    "dataset_to_index",
    "task_name",
    "instruction",
    "success",
    "kind",
]
_FOREIGN_EPISODE_COLUMNS = _EPISODE_COLUMNS[:7]  # LeRobot's own; the rest are this package's labels
_LABELLED = "labelled"  # optional episode column: datasets written before it have labels everywhere
_FRAME_COLUMNS = ["action", "observation.state", "done_label", "subtask_index", "episode_index", "index"]
FOREIGN_KIND = "expert"
STATE_KEY = "observation.state"
SUCCESS_KEY = "next.success"  # LeRobot's per-frame success flag (e.g. lerobot/pusht)


@dataclass(frozen=True)
class Layout:
    """Where a dataset keeps what the package reads: its chosen camera, actions and states."""

    image_key: str  # the camera feature read as frames
    image_shape: tuple[int, int, int]  # (height, width, 3)
    video: bool  # frames in mp4 files, else image bytes in the parquet
    action_names: list[str]
    state_names: list[str]  # empty: the dataset has no observation.state
    native: bool  # written by this package: done_label, subtask_index and episode labels are there
    success_key: str = ""  # a foreign dataset's per-frame success feature (LeRobot's next.success), if any

    @property
    def frame_columns(self) -> list[str]:
        if self.native:
            columns = list(_FRAME_COLUMNS)
        else:
            columns = ["action", "episode_index", "index"] + [STATE_KEY] * bool(self.state_names)
            columns += [self.success_key] * bool(self.success_key)
        return columns + ([] if self.video else [self.image_key])


@dataclass(frozen=True)
class EpisodeArrays:
    """Episodes decoded into contiguous arrays; episode e is rows ``starts[e]:starts[e] + lengths[e]``."""

    frames: np.ndarray  # uint8 [N,H,W,3]
    actions: np.ndarray  # float32 [N,A]
    states: np.ndarray  # float32 [N,S]
    done: np.ndarray  # float32 [N]
    subtask_index: np.ndarray  # int64 [N]
    episode_index: np.ndarray  # int64 [E] dataset index of each episode
    starts: np.ndarray  # int64 [E]
    lengths: np.ndarray  # int64 [E]
    task_index: np.ndarray  # int64 [E]
    labelled: np.ndarray  # bool [E] success and done labels known (else the done head skips the episode)


class EpisodeDataset:
    """A validated dataset on disk. ``episode(i)`` decodes one episode; ``load_arrays()`` decodes
    all of them once into memory (cached) for training."""

    def __init__(self, root: Path, info: dict[str, Any], tasks: list[str], episodes: list[EpisodeMeta], layout: Layout):
        self.root, self.info, self.episodes, self.layout = root, info, episodes, layout
        self.tasks = tasks  # instruction of each task_index
        self.image_key = layout.image_key
        self.camera = layout.image_key.removeprefix(IMAGE_PREFIX)
        self.image_shape = layout.image_shape
        self.video = layout.video
        self.action_names = layout.action_names
        self.state_names = layout.state_names
        # the physical commands a recording sent, beside the normalised actions
        self.command_names: list[str] = info["features"].get("command", {}).get("names", [])
        self._arrays: EpisodeArrays | None = None

    @classmethod
    def open(cls, root: Path | str, camera: str = "") -> EpisodeDataset:
        """``camera``: the camera feature to read (``observation.images.wrist`` or just ``wrist``);
        needed only when the dataset has several."""
        root = Path(root)
        if not root.is_dir():
            raise DatasetNotFoundError(f"{root}: no such folder")
        if not (root / INFO_PATH).is_file():
            raise DatasetNotFoundError(f"{root}: not a LeRobot dataset ({INFO_PATH} missing)")
        info, layout = _load_info(root / INFO_PATH, camera)
        tasks = _load_tasks(root / TASKS_PATH, info["total_tasks"])
        episodes = _load_episodes(root, info, tasks, layout)
        _check_files(root, info, episodes, layout)
        if layout.success_key:
            episodes = _success_labels(root, info, episodes, layout.success_key)
        return cls(root, info, tasks, episodes, layout)

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return self.info["total_frames"]

    @property
    def fps(self) -> int:
        return self.info["fps"]

    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        """meta/stats.json as arrays: {feature: {min, max, mean, std, count, q01, q10, q50, q90, q99}} (older
        datasets: without the quantiles)."""
        raw = _read_json(self.root / STATS_PATH)
        return {key: {name: np.asarray(value) for name, value in ft.items()} for key, ft in raw.items()}

    def summary(self) -> DatasetSummary:
        return DatasetSummary.of(self.root, self.info, self.episodes, self.image_key, self.image_shape)

    def episode(self, index: int) -> Episode:
        if not 0 <= index < self.num_episodes:
            raise IndexError(f"{self.root}: episode {index} out of range (0..{self.num_episodes - 1})")
        meta = self.episodes[index]
        arrays = self._decode([meta])
        return Episode(
            frames=arrays.frames,
            actions=arrays.actions,
            states=arrays.states,
            done=arrays.done,
            subtask_index=arrays.subtask_index,
            task=meta.task,
            instruction=meta.instruction,
            success=meta.success,
            kind=meta.kind,
            labelled=meta.labelled,
        )

    def commands(self, index: int) -> np.ndarray:
        """float32 [T,A]: episode ``index``'s physical commands (value x scale in ``info['action_spec']`` units)."""
        if not self.command_names:
            raise DatasetSchemaError(f"{self.root}: the dataset has no command column (not a recording)")
        meta = self.episodes[index]
        path = _data_path(self.root, self.info, meta)
        table = _read_parquet(path, columns=["command"], filters=[("episode_index", "==", meta.index)])
        return numpy_column(table["command"]).reshape(len(table), -1)

    def load_arrays(self) -> EpisodeArrays:
        """All episodes decoded once into contiguous arrays (cached on this object)."""
        if self._arrays is None:
            self._arrays = self._decode(self.episodes)
        return self._arrays

    def _decode(self, metas: list[EpisodeMeta]) -> EpisodeArrays:
        """Decode ``metas`` (in dataset order) into contiguous arrays, reading each file once."""
        lengths = np.array([m.length for m in metas], np.int64)
        total = int(lengths.sum())
        out = EpisodeArrays(
            frames=np.empty((total, *self.image_shape), np.uint8),
            actions=np.empty((total, len(self.action_names)), np.float32),
            states=np.empty((total, len(self.state_names)), np.float32),
            done=np.empty(total, np.float32),
            subtask_index=np.empty(total, np.int64),
            episode_index=np.array([m.index for m in metas], np.int64),
            starts=np.cumsum(lengths) - lengths,
            lengths=lengths,
            task_index=np.array([m.task_index for m in metas], np.int64),
            labelled=np.array([m.labelled for m in metas], bool),
        )
        if not self.layout.native:
            out.done[:] = 0.0
            out.subtask_index[:] = 0
        for group, rows in _file_groups(metas, lambda m: m.data_file):
            self._read_rows(group, out, rows)
        if self.video:
            for group, rows in _file_groups(metas, lambda m: m.video_file):
                self._read_video(group, out.frames[rows])
        return out

    def _read_rows(self, group: list[EpisodeMeta], out: EpisodeArrays, rows: slice) -> None:
        """Fill ``out[rows]`` with ``group``, consecutive episodes of one data file."""
        path = _data_path(self.root, self.info, group[0])
        wanted = [m.index for m in group]
        table = _read_parquet(path, columns=self.layout.frame_columns, filters=[("episode_index", "in", wanted)])
        expected = np.repeat(wanted, [m.length for m in group])
        if not np.array_equal(numpy_column(table["episode_index"]), expected):
            raise DatasetCorruptError(f"{path}: rows of episodes {wanted} are missing or out of order")
        global_index = np.concatenate([np.arange(m.from_index, m.from_index + m.length) for m in group])
        if not np.array_equal(numpy_column(table["index"]), global_index):
            raise DatasetCorruptError(f"{path}: frame 'index' column disagrees with {EPISODES_DIR}")
        out.actions[rows] = _matrix(table, "action", len(self.action_names), path)
        if self.state_names:
            out.states[rows] = _matrix(table, STATE_KEY, len(self.state_names), path)
        if self.layout.native:
            out.done[rows] = numpy_column(table["done_label"])
            out.subtask_index[rows] = numpy_column(table["subtask_index"])
        elif self.layout.success_key:
            success = _success_column(table, self.layout.success_key, path)
            starts = np.cumsum([0] + [m.length for m in group])
            out.done[rows] = np.concatenate([_done_from_success(success[a:b]) for a, b in itertools.pairwise(starts)])
        if not self.video:
            pngs = table[self.image_key].combine_chunks().field("bytes").to_pylist()
            for row, data in enumerate(pngs):
                try:
                    out.frames[rows.start + row] = decode_png(data, self.image_shape)
                except (CodecError, TypeError) as err:  # TypeError: a null image
                    raise DatasetCorruptError(f"{path}: image of frame {global_index[row]}: {err}") from None

    def _read_video(self, group: list[EpisodeMeta], out: np.ndarray) -> None:
        """Fill ``out`` (uint8 [n,H,W,3]) with ``group``, consecutive episodes of one mp4 file."""
        path = _video_path(self.root, self.info, group[0], self.image_key)
        first = [round(m.video_from_timestamp * self.fps) for m in group]  # frame number in the file
        try:
            decoded = read_mp4(path, first[-1] + group[-1].length, self.image_shape)
        except CodecError as err:
            raise DatasetCorruptError(f"{path}: {err}") from None
        out[:] = np.concatenate([decoded[f : f + m.length] for m, f in zip(group, first, strict=True)])


def open_run_dataset(path: str | Path, split: dict[str, Any] | None) -> EpisodeDataset:
    """A dataset opened for a world-model run: its own dataset (the one split.json names) with the camera
    it was trained on; any other dataset with its only camera."""
    split = split or {}
    own = bool(split.get("dataset")) and Path(path).resolve() == Path(split["dataset"]).resolve()
    return EpisodeDataset.open(path, split.get("camera", "") if own else "")


def _matrix(table: pa.Table, key: str, width: int, path: Path) -> np.ndarray:
    """A float column of ``width`` values per row as float32 [rows, width]: fixed-size or plain list
    columns (as LeRobot and HF ``datasets`` write them) or, for width 1, a scalar column."""
    column = table[key].combine_chunks()
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(column.type):
        if column.null_count or set(np.asarray(pc.list_value_length(column)).tolist()) - {width}:
            raise DatasetCorruptError(f"{path}: '{key}' rows are not all {width} values long")
        values = np.asarray(column.flatten())
    else:
        values = np.asarray(column)
    if values.size != len(table) * width or values.dtype.kind not in "fiu":
        raise DatasetCorruptError(f"{path}: '{key}' is not {width} numbers per row")
    return values.reshape(len(table), width).astype(np.float32)


def _file_groups(
    metas: list[EpisodeMeta], file_of: Callable[[EpisodeMeta], Any]
) -> list[tuple[list[EpisodeMeta], slice]]:
    """Runs of consecutive episodes stored in one file, with their rows in the decoded arrays."""
    groups, row = [], 0
    for _, run in groupby(metas, key=file_of):
        group = list(run)
        length = sum(m.length for m in group)
        groups.append((group, slice(row, row + length)))
        row += length
    return groups


def _data_path(root: Path, info: dict[str, Any], meta: EpisodeMeta) -> Path:
    chunk, file = meta.data_file
    return root / info["data_path"].format(chunk_index=chunk, file_index=file)


def _video_path(root: Path, info: dict[str, Any], meta: EpisodeMeta, key: str) -> Path:
    assert meta.video_file is not None, "read only from a video dataset, whose episodes all name their file"
    chunk, file = meta.video_file
    return root / info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetCorruptError(f"{path}: unreadable JSON ({err})") from None


def _read_parquet(path: Path, **kwargs: Any) -> pa.Table:
    return _parquet(pq.read_table, path, **kwargs)


def _read_parquet_metadata(path: Path) -> pq.FileMetaData:
    return _parquet(pq.read_metadata, path)


def _parquet(read: Callable[..., Any], path: Path, **kwargs: Any) -> Any:
    if not path.is_file():
        raise DatasetCorruptError(f"{path}: file missing")
    try:
        return read(path, **kwargs)
    except (OSError, pa.ArrowException) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DatasetCorruptError(f"{path}: truncated or corrupt parquet ({reason})") from None


def _load_info(path: Path, camera: str) -> tuple[dict[str, Any], Layout]:
    info = _read_json(path)
    if not isinstance(info, dict):
        raise DatasetCorruptError(f"{path}: expected a JSON object")
    if (version := info.get("codebase_version")) != CODEBASE_VERSION:
        raise DatasetVersionError(f"{path}: codebase_version {version!r}, expected {CODEBASE_VERSION!r}")
    for key, kind in _INFO_TYPES.items():
        if not isinstance(info.get(key), kind):
            raise DatasetCorruptError(f"{path}: '{key}' missing or not a {kind.__name__}")
    features = info["features"]
    key = _choose_camera(path, features, camera)
    native = "done_label" in features and "subtask_index" in features  # this package always writes both
    try:
        image = features[key]
        video = image["dtype"] == "video"
        layout = Layout(
            image_key=key,
            image_shape=_image_shape(image),
            video=video,
            action_names=_names(features["action"], "action"),
            state_names=_names(features[STATE_KEY], "state") if STATE_KEY in features else [],
            native=native,
            success_key=SUCCESS_KEY if SUCCESS_KEY in features and not native else "",
        )
        if native:
            names = features["action"]["names"], features[STATE_KEY]["names"]
            commands = features["command"]["names"] if "command" in features else ()
            camera_name = key.removeprefix(IMAGE_PREFIX)
            expected = build_features(camera_name, tuple(image["shape"]), *names, video, info["fps"], commands)
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetSchemaError(f"{path}: features are not a readable LeRobot dataset's ({err})") from None
    if native:
        have, want = _comparable(features), _comparable(expected)
        if differing := sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k)):
            raise DatasetSchemaError(f"{path}: features differ from the roboscape layout: {', '.join(differing)}")
    if (
        "video_path" not in info
        or (video and info["video_path"] is None)
        or (native and not video and info["video_path"])
    ):
        raise DatasetCorruptError(f"{path}: 'video_path' missing or contradicting the {image['dtype']} dtype")
    return info, layout


def _success_column(table: pa.Table, key: str, path: Path) -> np.ndarray:
    """bool [rows] of a per-frame success feature (bool, or a number where nonzero is success)."""
    try:
        return numpy_column(table[key]).reshape(len(table), -1)[:, 0].astype(bool)
    except (ValueError, TypeError, pa.ArrowException) as err:
        raise DatasetCorruptError(f"{path}: '{key}' is not one flag per frame ({err})") from None


def _done_from_success(success: np.ndarray) -> np.ndarray:
    """An episode's done labels from its per-frame success: rising to the first successful frame, else 0."""
    return done_labels(len(success), np.flatnonzero(success)[:1])[0]


def _success_labels(root: Path, info: dict[str, Any], metas: list[EpisodeMeta], key: str) -> list[EpisodeMeta]:
    """``metas`` labelled from the per-frame success feature ``key``: success where any frame says so."""
    labelled = []
    for group, _ in _file_groups(metas, lambda m: m.data_file):
        path = _data_path(root, info, group[0])
        table = _read_parquet(path, columns=["episode_index", key])
        index, success = numpy_column(table["episode_index"]), _success_column(table, key, path)
        for meta in group:
            hit = bool(success[index == meta.index].any())
            labelled.append(dataclasses.replace(meta, success=hit, labelled=True))
    return labelled


def _choose_camera(path: Path, features: dict[str, Any], camera: str) -> str:
    """The image or video feature to read: the only one, or the one named by ``camera``."""
    keys = [k for k, ft in features.items() if isinstance(ft, dict) and ft.get("dtype") in ("image", "video")]
    available = ", ".join(keys) or "none"
    if camera:
        for key in (camera, IMAGE_PREFIX + camera):
            if key in keys:
                return key
        raise DatasetSchemaError(f"{path}: no camera {camera!r}; available: {available}")
    if len(keys) != 1:
        raise DatasetSchemaError(f"{path}: {len(keys)} cameras ({available}): choose one with camera=<key>")
    return keys[0]


def _image_shape(feature: dict[str, Any]) -> tuple[int, int, int]:
    """(height, width, 3) of an image feature, whose shape LeRobot gives as HWC or, with names
    ["channels", "height", "width"], as CHW."""
    shape = [int(n) for n in feature["shape"]]
    if feature.get("names") == ["channels", "height", "width"]:
        shape = shape[1:] + shape[:1]
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"image shape {feature['shape']} is not [height, width, 3] (RGB)")
    return shape[0], shape[1], shape[2]


def _names(feature: dict[str, Any], prefix: str) -> list[str]:
    """The per-dimension names of a vector feature; LeRobot v2 converts keep them as
    ``{"motors": [...]}``, and where there are none they are ``<prefix>_<i>``."""
    if feature["dtype"] not in ("float32", "float64", "int64", "int32"):
        raise ValueError(f"dtype {feature['dtype']!r} is not numeric")
    if len(feature["shape"]) != 1 or feature["shape"][0] < 1:
        raise ValueError(f"shape {feature['shape']} is not a vector")
    size, names = feature["shape"][0], feature.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, list) and len(names) == size and all(isinstance(n, str) for n in names):
        return list(names)
    return [f"{prefix}_{i}" for i in range(size)]


def _comparable(features: dict[str, dict[str, Any]]) -> dict[str, tuple]:
    """Features without their informative ``info`` block (codec details), for a schema comparison."""
    return {key: (ft.get("dtype"), ft.get("shape"), ft.get("names")) for key, ft in features.items()}


def _load_tasks(path: Path, total_tasks: int) -> list[str]:
    table = _read_parquet(path)
    if not {"task", "task_index"} <= set(table.column_names):
        raise DatasetCorruptError(f"{path}: needs columns 'task' and 'task_index', has {table.column_names}")
    order = numpy_column(table["task_index"])
    if len(order) != total_tasks or not np.array_equal(np.sort(order), np.arange(total_tasks)):
        raise DatasetCorruptError(f"{path}: task_index is not 0..{total_tasks - 1} (info.json total_tasks)")
    tasks = table["task"].to_pylist()
    return [tasks[i] for i in np.argsort(order)]


def _load_episodes(root: Path, info: dict[str, Any], tasks: list[str], layout: Layout) -> list[EpisodeMeta]:
    where = root / EPISODES_DIR
    paths = sorted(where.glob("chunk-*/file-*.parquet"))
    if not paths:
        raise DatasetCorruptError(f"{where}: no episode metadata files")
    key = layout.image_key
    video_columns = [f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp"]
    rows = []
    for path in paths:
        table = _read_parquet(path)
        columns = (_EPISODE_COLUMNS if layout.native else _FOREIGN_EPISODE_COLUMNS) + video_columns * layout.video
        columns += [_LABELLED] * (layout.native and _LABELLED in table.column_names)
        if missing := [c for c in columns if c not in table.column_names]:
            raise DatasetCorruptError(f"{path}: missing columns {', '.join(missing)}")
        if nulls := [c for c in columns if table[c].null_count]:
            raise DatasetCorruptError(f"{path}: null values in {', '.join(nulls)}")
        rows += table.select(columns).to_pylist()

    if len(rows) != info["total_episodes"]:
        raise DatasetCorruptError(f"{where}: {len(rows)} episodes, info.json says {info['total_episodes']}")
    episodes, from_index = [], 0
    for i, row in enumerate(rows):
        if row["episode_index"] != i or row["length"] <= 0:
            got = f"episode_index {row['episode_index']}, length {row['length']}"
            raise DatasetCorruptError(f"{where}: row {i}: {got}")
        if (row["dataset_from_index"], row["dataset_to_index"]) != (from_index, from_index + row["length"]):
            raise DatasetCorruptError(f"{where}: episode {i}: frame range does not follow episode {i - 1}")
        if not layout.native:  # a LeRobot episode's task is its first task string; it has no labels
            row["tasks"] = row["tasks"][:1]
            task = row["tasks"][0] if row["tasks"] else None
            row |= {"task_name": task, "instruction": task, "success": False, "kind": FOREIGN_KIND, _LABELLED: False}
        if row["tasks"] != [row["instruction"]] or row["instruction"] not in tasks:
            raise DatasetCorruptError(f"{where}: episode {i}: task {row['tasks']} is not in {TASKS_PATH}")
        if row["kind"] not in KINDS:
            raise DatasetCorruptError(f"{where}: episode {i}: unknown kind {row['kind']!r}")
        episodes.append(
            EpisodeMeta(
                index=i,
                length=row["length"],
                task=row["task_name"],
                instruction=row["instruction"],
                success=row["success"],
                kind=row["kind"],
                task_index=tasks.index(row["instruction"]),
                from_index=from_index,
                data_file=(row["data/chunk_index"], row["data/file_index"]),
                video_file=(row[video_columns[0]], row[video_columns[1]]) if layout.video else None,
                video_from_timestamp=row[video_columns[2]] if layout.video else 0.0,
                labelled=row.get(_LABELLED, True),
            )
        )
        from_index += row["length"]
    if from_index != info["total_frames"]:
        raise DatasetCorruptError(f"{where}: {from_index} frames, info.json says {info['total_frames']}")
    return episodes


def _check_files(root: Path, info: dict[str, Any], episodes: list[EpisodeMeta], layout: Layout) -> None:
    """Every referenced data file has a readable footer, the expected columns (exactly this package's
    for its own datasets; at least the ones read, for others) and row count; every referenced video
    file exists."""
    for group, rows in _file_groups(episodes, lambda m: m.data_file):
        path = _data_path(root, info, group[0])
        metadata = _read_parquet_metadata(path)
        names = metadata.schema.to_arrow_schema().names
        if layout.native and names != (columns := arrow_schema(info["features"]).names):
            raise DatasetCorruptError(f"{path}: columns {names}, expected {columns}")
        if missing := [c for c in layout.frame_columns if c not in names]:
            raise DatasetCorruptError(f"{path}: missing columns {', '.join(missing)}")
        if metadata.num_rows != (expected := rows.stop - rows.start):
            raise DatasetCorruptError(f"{path}: {metadata.num_rows} rows, {EPISODES_DIR} says {expected}")
    if layout.video:
        for group, _ in _file_groups(episodes, lambda m: m.video_file):
            if not (path := _video_path(root, info, group[0], layout.image_key)).is_file():
                raise DatasetCorruptError(f"{path}: file missing")
