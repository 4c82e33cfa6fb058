"""Episode datasets on disk in the LeRobotDataset v3.0 layout, and their atomic writer.

    <root>/meta/info.json                              schema, fps, totals, path templates
    <root>/meta/stats.json                             per-feature min/max/mean/std/count
    <root>/meta/tasks.parquet                          task (instruction) -> task_index
    <root>/meta/episodes/chunk-000/file-000.parquet    one row per episode: length, offsets, files
    <root>/data/chunk-XXX/file-XXX.parquet             frames of many episodes; a new file starts
                                                       when the next episode would pass the size limit
    <root>/videos/<camera key>/chunk-XXX/file-XXX.mp4  only with video=True (lossy)

Frames are lossless PNG bytes inside the parquet (feature dtype "image", as LeRobot stores images
without video), so a round trip is bit-exact. Features beyond LeRobot's defaults: ``done_label``
(float32 soft done label of the RoboScape-R paper) and ``subtask_index`` (the frame's sub-task ordinal within
its episode), and optionally ``command`` (float32, the physical command each action stands for,
value x scale in the units of info.json's ``action_spec``: what a recorded graph's adapters sent).
Episode rows carry ``task_name``, ``instruction``, ``success``, ``kind`` and ``labelled``
(false: success and done are unknown, e.g. an imported bag without labels; such an episode trains the
world model's dynamics but not its done head); the LeRobot "task" of an episode is its instruction, so
``task_index`` indexes instructions. Writers may add their own keys to info.json (``extra_info``), e.g.
the ``action_spec`` of imported actions.

A ``DatasetWriter`` writes into a hidden sibling folder and renames it into place in
``finalize()``: a dataset on disk is complete or absent. ``reader.EpisodeDataset`` loads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from roboscape_r_ros.data.codecs import MP4_CODEC, MP4_PIX_FMT, CodecError, Mp4Writer, encode_png
from roboscape_r_ros.data.stats import Stats, aggregate_stats, feature_stats, image_stats
from roboscape_r_ros.errors import RoboscapeError

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
IMAGE_PREFIX = "observation.images."

# LeRobot's defaults: files per chunk folder, and size limits per data / video file.
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100.0
VIDEO_FILES_SIZE_IN_MB = 500.0

KINDS = ("expert", "noisy", "failed", "random", "policy")  # policy: a trained policy's own episodes (rollouts)

_SCALAR = {"dtype": "int64", "shape": [1], "names": None}
DEFAULT_FEATURES = {  # LeRobot adds these to every dataset
    "timestamp": {**_SCALAR, "dtype": "float32"},
    "frame_index": _SCALAR,
    "episode_index": _SCALAR,
    "index": _SCALAR,
    "task_index": _SCALAR,
}


class DatasetError(RoboscapeError, ValueError):
    """A dataset that cannot be written or read as asked; the message names the file."""


class DatasetExistsError(DatasetError):
    """The target folder already holds something and may not be replaced."""


class DatasetWriteError(DatasetError):
    """The dataset cannot be written (unwritable folder, I/O failure, misuse of the writer)."""


class EpisodeError(DatasetError):
    """An episode handed to the writer has a wrong shape, dtype or value."""


class DatasetNotFoundError(DatasetError):
    """No dataset at the path (missing folder, or no meta/info.json)."""


class DatasetVersionError(DatasetError):
    """A LeRobot dataset of another codebase version."""


class DatasetSchemaError(DatasetError):
    """A readable LeRobot v3 dataset whose features are not the ones this package writes."""


class DatasetCorruptError(DatasetError):
    """A file that is unreadable or disagrees with the metadata."""


@dataclass
class Episode:
    frames: np.ndarray  # uint8 [T,H,W,3], observation before action t
    actions: np.ndarray  # float32 [T,A]
    states: np.ndarray  # float32 [T,S]
    done: np.ndarray  # float32 [T] self-supervised done label per frame, in [0, 1]
    subtask_index: np.ndarray  # int64 [T] sub-task ordinal within the episode
    task: str  # task name, e.g. "pick-place-v3"
    instruction: str  # natural-language instruction; the LeRobot "task" string
    success: bool
    kind: str  # one of KINDS
    labelled: bool = True  # False: success and done unknown (then success is False and done all 0)
    commands: np.ndarray | None = None  # float32 [T,A] physical commands, for a writer with command_names


@dataclass(frozen=True)
class EpisodeMeta:
    """One row of meta/episodes: what an episode shows and where its frames live."""

    index: int
    length: int
    task: str
    instruction: str
    success: bool
    kind: str
    task_index: int
    from_index: int  # global index of its first frame (dataset_from_index)
    data_file: tuple[int, int]  # (chunk_index, file_index) of its data parquet
    video_file: tuple[int, int] | None = None  # same for its mp4, with video
    video_from_timestamp: float = 0.0  # its first frame's time inside that mp4
    labelled: bool = True  # success and done labels known


def image_key(camera: str) -> str:
    return IMAGE_PREFIX + camera


def build_features(
    camera: str,
    image_shape: tuple[int, int, int],
    action_names: Sequence[str],
    state_names: Sequence[str],
    video: bool,
    fps: int,
    command_names: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """The ``features`` of info.json; the reader rebuilds them to check a dataset's schema. ``command``
    only with ``command_names``."""
    image: dict[str, Any] = {
        "dtype": "video" if video else "image",
        "shape": list(image_shape),
        "names": ["height", "width", "channels"],
    }
    if video:
        height, width, channels = image_shape
        image["info"] = {
            "video.fps": float(fps),
            "video.height": height,
            "video.width": width,
            "video.channels": channels,
            "video.codec": MP4_CODEC,
            "video.pix_fmt": MP4_PIX_FMT,
            "video.is_depth_map": False,
            "has_audio": False,
        }
    return {
        image_key(camera): image,
        "observation.state": {"dtype": "float32", "shape": [len(state_names)], "names": list(state_names)},
        "action": {"dtype": "float32", "shape": [len(action_names)], "names": list(action_names)},
        **(
            {"command": {"dtype": "float32", "shape": [len(command_names)], "names": list(command_names)}}
            if command_names
            else {}
        ),
        "done_label": {"dtype": "float32", "shape": [1], "names": None},
        "subtask_index": {"dtype": "int64", "shape": [1], "names": None},
        **DEFAULT_FEATURES,
    }


def camera_of(features: dict[str, dict[str, Any]]) -> str:
    """The single camera name in a feature dict (``observation.images.<camera>``)."""
    cameras = [key.removeprefix(IMAGE_PREFIX) for key in features if key.startswith(IMAGE_PREFIX)]
    if len(cameras) != 1:
        raise DatasetSchemaError(f"expected exactly one {IMAGE_PREFIX}<camera> feature, found {len(cameras)}")
    return cameras[0]


def arrow_schema(features: dict[str, dict[str, Any]]) -> pa.Schema:
    """Parquet columns as HF ``datasets`` lays them out: Image -> struct<bytes, path>,
    shape [1] -> a scalar, shape [n] -> fixed-size list. Video features live in mp4 files."""
    fields = []
    for key, ft in features.items():
        if ft["dtype"] == "video":
            continue
        if ft["dtype"] == "image":
            arrow_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        elif ft["shape"] == [1]:
            arrow_type = pa.from_numpy_dtype(np.dtype(ft["dtype"]))
        else:
            arrow_type = pa.list_(pa.from_numpy_dtype(np.dtype(ft["dtype"])), ft["shape"][0])
        fields.append(pa.field(key, arrow_type))
    return pa.schema(fields)


def arrow_column(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """``[T]`` or ``[T,n]`` numpy -> a scalar or fixed-size-list arrow column."""
    if pa.types.is_fixed_size_list(arrow_type):
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), arrow_type.list_size)
    return pa.array(values.reshape(-1), type=arrow_type)


def numpy_column(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Inverse of ``arrow_column``: ``[T]`` for scalars, ``[T,n]`` for fixed-size lists."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        return np.asarray(column.flatten()).reshape(len(column), column.type.list_size)
    return np.asarray(column)


@dataclass(frozen=True)
class DatasetSummary:
    root: Path
    episodes: int
    frames: int
    fps: int
    camera: str
    image_shape: tuple[int, int, int]
    video: bool
    size_bytes: int
    episodes_per_task: dict[str, int]
    episodes_per_kind: dict[str, int]
    successes_per_kind: dict[str, int]
    labelled_per_kind: dict[str, int]
    state_names: tuple[str, ...] = ()
    action_names: tuple[str, ...] = ()
    action_spec: dict[str, Any] | None = None  # info.json's, where a writer recorded what actions mean
    commands: bool = False  # a ``command`` column (physical commands) beside ``action``

    @classmethod
    def of(
        cls,
        root: Path,
        info: dict[str, Any],
        episodes: Sequence[EpisodeMeta],
        key: str | None = None,
        image_shape: tuple[int, int, int] | None = None,
    ) -> DatasetSummary:
        """``key`` and ``image_shape``: the camera read, where the dataset has another layout or several."""
        key = key or image_key(camera_of(info["features"]))
        image = info["features"][key]
        return cls(
            root=root,
            episodes=len(episodes),
            frames=sum(e.length for e in episodes),
            fps=info["fps"],
            camera=key.removeprefix(IMAGE_PREFIX),
            image_shape=image_shape or tuple(image["shape"]),
            video=image["dtype"] == "video",
            size_bytes=sum(p.stat().st_size for p in root.rglob("*") if p.is_file()),
            episodes_per_task=dict(sorted(Counter(e.task for e in episodes).items())),
            episodes_per_kind={k: n for k in KINDS if (n := sum(e.kind == k for e in episodes))},
            successes_per_kind={k: sum(e.success for e in episodes if e.kind == k) for k in KINDS},
            labelled_per_kind={k: sum(e.labelled for e in episodes if e.kind == k) for k in KINDS},
            state_names=tuple(info["features"]["observation.state"]["names"]),
            action_names=tuple(info["features"]["action"]["names"]),
            action_spec=info.get("action_spec"),
            commands="command" in info["features"],
        )

    @property
    def unlabelled(self) -> int:
        return self.episodes - sum(self.labelled_per_kind.values())

    def __str__(self) -> str:
        height, width, _ = self.image_shape
        storage = "mp4 video (lossy)" if self.video else "PNG in parquet (lossless)"
        kinds = ", ".join(f"{kind} {n} ({self._success_rate(kind)})" for kind, n in self.episodes_per_kind.items())
        tasks = ", ".join(f"{task} ({n})" for task, n in self.episodes_per_task.items())
        mib = self.size_bytes / 2**20
        return "\n".join(
            [
                f"dataset   {self.root} (LeRobot {CODEBASE_VERSION}, {mib:.1f} MiB on disk)",
                f"episodes  {self.episodes}, {self.frames} frames "
                f"({self.frames / self.episodes:.1f} per episode) at {self.fps} fps",
                f"frames    {width}x{height} RGB from camera '{self.camera}', {storage}",
                f"tasks     {len(self.episodes_per_task)}: {tasks}",
                f"kinds     {kinds}",
                f"state     {len(self.state_names)}: {', '.join(self.state_names)}",
                f"action    {self._actions()}",
            ]
            + (
                [f"labels    unknown for {self.unlabelled} episodes (they train the dynamics, not the done head)"]
                if self.unlabelled
                else []
            )
        )

    def _actions(self) -> str:
        names, spec = ", ".join(self.action_names), self.action_spec or {}
        if not {"scale", "units", "mode"} <= spec.keys():  # a writer's own action_spec may say less
            return names
        units = ", ".join(f"{s:g} {u}" if u != "1" else f"{s:g}" for s, u in zip(spec["scale"], spec["units"]))
        text = f"{names}: one unit is {units}, {spec['mode']}"
        if spec.get("period_s"):
            text += f" over {1000 * spec['period_s']:g} ms"
        return text + ("; physical commands in 'command'" if self.commands else "")

    def _success_rate(self, kind: str) -> str:
        labelled, successes = self.labelled_per_kind[kind], self.successes_per_kind[kind]
        if labelled == 0:
            return "success unknown"
        if labelled < self.episodes_per_kind[kind]:
            return f"{successes / labelled:.0%} success of {labelled} labelled"
        return f"{successes / labelled:.0%} success"


W = TypeVar("W", pq.ParquetWriter, Mp4Writer)


class _Shards(Generic[W]):
    """The chunk-XXX/file-XXX file being written; starts the next file when the coming episode
    would push the current one past the size limit (episodes are never split across files)."""

    def __init__(self, root: Path, template: str, limit_mb: float, chunks_size: int, open_file: Callable[[Path], W]):
        self.root, self.template = root, template
        self.open_file: Callable[[Path], W] = open_file
        self.limit_bytes, self.chunks_size = limit_mb * 2**20, chunks_size
        self.chunk = self.file = 0
        self.size = 0  # bytes written to the current file
        self.writer: W | None = None

    def writer_for(self, incoming_bytes: float) -> W:
        if self.writer is not None and self.size + incoming_bytes > self.limit_bytes:
            self.close()
            self.file += 1
            if self.file == self.chunks_size:  # chunk folder full: LeRobot's update_chunk_file_indices
                self.chunk, self.file = self.chunk + 1, 0
        if self.writer is None:
            path = self.root / self.template.format(chunk_index=self.chunk, file_index=self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = self.open_file(path)
        return self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer, self.size = None, 0


def _remove_stale_partials(root: Path) -> None:
    """Delete partial folders of ``root`` left by writers that were killed (their process is gone)."""
    for partial in root.parent.glob(f".{root.name}.*.partial"):
        pid = partial.name[len(root.name) + 2 :].split(".")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True


class DatasetWriter:
    """Writes episodes to ``root`` atomically. Use as a context manager::

        with DatasetWriter(root, fps=30, camera="corner2", image_shape=(64, 64, 3),
                           action_names=[...], state_names=[...]) as writer:
            writer.add_episode(episode)
            summary = writer.finalize()   # also called on a clean exit from the block

    An exception inside the block removes everything written; an ``EpisodeError`` caught inside
    it leaves the writer usable. ``data_files_size_in_mb``, ``video_files_size_in_mb`` and
    ``chunks_size`` are LeRobot's file-rolling limits.
    """

    def __init__(
        self,
        root: Path,
        *,
        fps: int,
        camera: str,
        image_shape: tuple[int, int, int],
        action_names: list[str],
        state_names: list[str],
        video: bool = False,
        robot_type: str = "sawyer",
        overwrite: bool = False,
        data_files_size_in_mb: float = DATA_FILES_SIZE_IN_MB,
        video_files_size_in_mb: float = VIDEO_FILES_SIZE_IN_MB,
        chunks_size: int = CHUNKS_SIZE,
        command_names: list[str] | None = None,
    ):
        self.root = Path(root)
        _check_settings(self.root, fps, camera, image_shape, action_names, state_names, video, chunks_size)
        self.overwrite = overwrite
        check_target(self.root, overwrite)
        try:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_partials(self.root)
            prefix = f".{self.root.name}.{os.getpid()}."
            self._tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=self.root.parent))
        except OSError as err:
            raise DatasetWriteError(f"{self.root}: output folder is not writable ({err.strerror})") from None
        # Removes the partial folder if this writer is dropped without finalize().
        self._discard = weakref.finalize(self, shutil.rmtree, self._tmp, ignore_errors=True)

        height, width, channels = image_shape  # (three: _check_settings)
        self.fps, self.image_shape, self.video = fps, (height, width, channels), video
        self._action_dim, self._state_dim = len(action_names), len(state_names)
        self._command_dim = len(command_names or ())
        self.features = build_features(
            camera, self.image_shape, action_names, state_names, video, fps, command_names or ()
        )
        self._image_key = image_key(camera)
        self._schema = arrow_schema(self.features)
        self._info_head = {"codebase_version": CODEBASE_VERSION, "robot_type": robot_type}
        self._limits = {
            "chunks_size": chunks_size,
            "data_files_size_in_mb": data_files_size_in_mb,
            "video_files_size_in_mb": video_files_size_in_mb,
        }
        self._data = _Shards(self._tmp, DATA_PATH, data_files_size_in_mb, chunks_size, self._open_parquet)
        self._video = _Shards(
            self._tmp,
            VIDEO_PATH.replace("{video_key}", self._image_key),
            video_files_size_in_mb,
            chunks_size,
            lambda path: Mp4Writer(path, fps, self.image_shape[0], self.image_shape[1]),
        )
        self._tasks: dict[str, int] = {}  # instruction -> task_index
        self._episodes: list[EpisodeMeta] = []
        self._stats: list[dict[str, Stats]] = []
        self._num_frames = 0
        self._summary: DatasetSummary | None = None
        self._closed = False

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort()
        elif not self._closed:
            self.finalize()

    def add_episode(self, episode: Episode) -> None:
        self._require_open()
        index = len(self._episodes)
        _validate_episode(episode, index, self.image_shape, self._action_dim, self._state_dim, self._command_dim)
        task_index = self._tasks.setdefault(episode.instruction, len(self._tasks))
        try:
            video_file, video_from = self._write_video(episode.frames) if self.video else (None, 0.0)
            columns = self._frame_columns(episode, index, task_index)
            table = pa.Table.from_arrays([columns[f.name] for f in self._schema], schema=self._schema)
            self._data.writer_for(table.nbytes).write_table(table)
            self._data.size += table.nbytes
        except (OSError, pa.ArrowException, CodecError) as err:
            self._abort()
            raise DatasetWriteError(f"{self._tmp}: writing episode {index} failed ({err})") from err
        self._episodes.append(
            EpisodeMeta(
                index=index,
                length=len(episode.actions),
                task=episode.task,
                instruction=episode.instruction,
                success=bool(episode.success),
                kind=episode.kind,
                task_index=task_index,
                from_index=self._num_frames,
                data_file=(self._data.chunk, self._data.file),
                video_file=video_file,
                video_from_timestamp=video_from,
                labelled=episode.labelled,
            )
        )
        self._stats.append(self._episode_stats(episode, columns))
        self._num_frames += len(episode.actions)

    def finalize(self, extra_info: dict[str, Any] | None = None) -> DatasetSummary:
        """Write the metadata (info.json gets the keys of ``extra_info`` too) and move the dataset into
        place; returns its summary."""
        if self._summary is not None:
            return self._summary
        self._require_open()
        if not self._episodes:
            self._abort()
            raise DatasetWriteError(f"{self.root}: no episodes were added, nothing written")
        try:
            self._data.close()
            self._video.close()
            info = self._write_metadata(extra_info or {})
            self._publish()
        except (OSError, pa.ArrowException) as err:
            self._abort()
            raise DatasetWriteError(f"{self.root}: finalizing failed ({err})") from err
        self._discard.detach()
        self._closed = True
        self._summary = DatasetSummary.of(self.root, info, self._episodes)
        return self._summary

    def _require_open(self) -> None:
        if self._closed:
            raise DatasetWriteError(f"{self.root}: the writer is closed (finalized or aborted)")

    def _abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        for shards in (self._data, self._video):
            with contextlib.suppress(OSError, pa.ArrowException, CodecError):  # deleted next anyway
                shards.close()
        self._discard()

    def _open_parquet(self, path: Path) -> pq.ParquetWriter:
        return pq.ParquetWriter(path, self._schema, compression="snappy")

    def _write_video(self, frames: np.ndarray) -> tuple[tuple[int, int], float]:
        current = self._video.writer
        per_frame = self._video.size / current.num_frames if current is not None and current.num_frames else 0
        writer = self._video.writer_for(per_frame * len(frames))
        from_timestamp = writer.num_frames / self.fps
        writer.write(frames)
        self._video.size = writer.size_bytes()
        return (self._video.chunk, self._video.file), from_timestamp

    def _frame_columns(self, episode: Episode, episode_index: int, task_index: int) -> dict[str, pa.Array]:
        length = len(episode.actions)
        frame_index = np.arange(length, dtype=np.int64)
        values = {
            "observation.state": episode.states,
            "action": episode.actions,
            # (commands come exactly when the writer has command_names: _validate_episode)
            **({"command": episode.commands} if episode.commands is not None else {}),
            "done_label": episode.done,
            "subtask_index": episode.subtask_index,
            "timestamp": (frame_index / self.fps).astype(np.float32),
            "frame_index": frame_index,
            "episode_index": np.full(length, episode_index, np.int64),
            "index": self._num_frames + frame_index,
            "task_index": np.full(length, task_index, np.int64),
        }
        columns = {key: arrow_column(v, self._schema.field(key).type) for key, v in values.items()}
        if not self.video:
            png = pa.array([encode_png(frame) for frame in episode.frames], pa.binary())
            no_path = pa.nulls(length, pa.string())
            columns[self._image_key] = pa.StructArray.from_arrays([png, no_path], ["bytes", "path"])
        return columns

    def _episode_stats(self, episode: Episode, columns: dict[str, pa.Array]) -> dict[str, Stats]:
        stats = {self._image_key: image_stats(episode.frames)}
        for key, column in columns.items():
            if key != self._image_key:
                stats[key] = feature_stats(numpy_column(column).reshape(len(column), -1))
        return stats

    def _write_metadata(self, extra_info: dict[str, Any]) -> dict[str, Any]:
        info = {
            **self._info_head,
            "total_episodes": len(self._episodes),
            "total_frames": self._num_frames,
            "total_tasks": len(self._tasks),
            **self._limits,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self._episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video else None,
            "features": self.features,
        }
        if clashes := sorted(info.keys() & extra_info.keys()):
            self._abort()
            raise DatasetWriteError(f"{self.root}: extra info.json keys {clashes} would replace LeRobot's")
        info |= extra_info
        _write_json(self._tmp / INFO_PATH, info)
        stats = {key: aggregate_stats([s[key] for s in self._stats]) for key in self._stats[0]}
        _write_json(self._tmp / STATS_PATH, _to_lists(stats))
        pq.write_table(_tasks_table(list(self._tasks)), self._tmp / TASKS_PATH)
        episodes_path = self._tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True)
        pq.write_table(self._episodes_table(), episodes_path)
        return info

    def _episodes_table(self) -> pa.Table:
        rows = []
        for episode, stats in zip(self._episodes, self._stats, strict=True):
            row = {
                "episode_index": episode.index,
                "tasks": [episode.instruction],
                "length": episode.length,
                "data/chunk_index": episode.data_file[0],
                "data/file_index": episode.data_file[1],
                "dataset_from_index": episode.from_index,
                "dataset_to_index": episode.from_index + episode.length,
            }
            if episode.video_file is not None:
                prefix = f"videos/{self._image_key}/"
                row[prefix + "chunk_index"], row[prefix + "file_index"] = episode.video_file
                row[prefix + "from_timestamp"] = episode.video_from_timestamp
                row[prefix + "to_timestamp"] = episode.video_from_timestamp + episode.length / self.fps
            row |= {
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
                "task_name": episode.task,
                "instruction": episode.instruction,
                "success": episode.success,
                "kind": episode.kind,
                "labelled": episode.labelled,
            }
            row |= {f"stats/{key}/{name}": v.tolist() for key, ft in stats.items() for name, v in ft.items()}
            rows.append(row)
        return pa.Table.from_pylist(rows)

    def _publish(self) -> None:
        check_target(self.root, self.overwrite)
        if self.root.is_dir() and any(self.root.iterdir()):  # overwrite=True, checked above
            old = self._tmp.with_suffix(".old")
            self.root.rename(old)
            try:
                self._tmp.rename(self.root)
            except OSError:
                old.rename(self.root)  # keep the previous dataset rather than none
                raise
            shutil.rmtree(old)
        else:
            os.replace(self._tmp, self.root)  # also replaces an empty folder


def _check_settings(
    root: Path,
    fps: int,
    camera: str,
    image_shape: tuple[int, int, int],
    action_names: Sequence[str],
    state_names: Sequence[str],
    video: bool,
    chunks_size: int,
) -> None:
    def fail(message: str) -> None:
        raise DatasetWriteError(f"{root}: {message}")

    if not isinstance(fps, int) or fps <= 0:
        fail(f"fps must be a positive integer, got {fps!r}")
    if not isinstance(camera, str) or not camera or "/" in camera:
        fail(f"camera name {camera!r} must be a non-empty string without '/'")
    if len(image_shape) != 3 or image_shape[2] != 3 or min(image_shape) <= 0:
        fail(f"image_shape must be (height, width, 3), got {tuple(image_shape)}")
    if video and (image_shape[0] % 2 or image_shape[1] % 2):
        fail(f"video needs an even height and width (yuv420p), got {tuple(image_shape[:2])}")
    if not action_names or not state_names:
        fail("action_names and state_names must not be empty")
    if chunks_size <= 0:
        fail(f"chunks_size must be positive, got {chunks_size}")


def check_target(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise DatasetExistsError(f"{root}: exists and is not a folder")
    if not root.is_dir() or not any(root.iterdir()):
        return
    if not overwrite:
        raise DatasetExistsError(f"{root}: folder exists and is not empty (overwrite=True replaces it)")
    if not (root / INFO_PATH).is_file():
        raise DatasetExistsError(f"{root}: not a dataset (no {INFO_PATH}), refusing to overwrite it")


def _validate_episode(
    episode: Episode, index: int, image_shape: tuple[int, ...], action_dim: int, state_dim: int, command_dim: int
) -> None:
    def fail(message: str) -> None:
        raise EpisodeError(f"episode {index}: {message}")

    def check(name: str, value: Any, dtype: type, shape: tuple[int, ...]) -> None:
        if not isinstance(value, np.ndarray):
            fail(f"{name} must be a numpy array, got {type(value).__name__}")
        if value.dtype != dtype:
            fail(f"{name} has dtype {value.dtype}, expected {np.dtype(dtype).name}")
        if value.shape != shape:
            fail(f"{name} has shape {value.shape}, expected {shape}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            fail(f"{name} holds NaN or inf (first at row {int(np.argwhere(~np.isfinite(value))[0][0])})")

    frames = episode.frames
    length = len(frames) if isinstance(frames, np.ndarray) and frames.ndim == 4 else 0
    if length == 0:
        got = frames.shape if isinstance(frames, np.ndarray) else type(frames).__name__
        fail(f"frames must be uint8 [T,H,W,3] with T >= 1, got {got}")
    check("frames", frames, np.uint8, (length, *image_shape))
    check("actions", episode.actions, np.float32, (length, action_dim))
    check("states", episode.states, np.float32, (length, state_dim))
    if command_dim:
        check("commands", episode.commands, np.float32, (length, command_dim))
    elif episode.commands is not None:
        fail("commands given to a writer without command_names")
    check("done", episode.done, np.float32, (length,))
    check("subtask_index", episode.subtask_index, np.int64, (length,))
    if episode.done.min() < 0 or episode.done.max() > 1:
        fail(f"done labels must lie in [0, 1], got [{episode.done.min():g}, {episode.done.max():g}]")
    if episode.subtask_index.min() < 0:
        fail("subtask_index must be >= 0")
    for name in ("task", "instruction"):
        if not isinstance(getattr(episode, name), str) or not getattr(episode, name).strip():
            fail(f"{name} must be a non-empty string, got {getattr(episode, name)!r}")
    if not isinstance(episode.success, (bool, np.bool_)):
        fail(f"success must be a bool, got {type(episode.success).__name__}")
    if episode.kind not in KINDS:
        fail(f"kind must be one of {', '.join(KINDS)}, got {episode.kind!r}")
    if not isinstance(episode.labelled, (bool, np.bool_)):
        fail(f"labelled must be a bool, got {type(episode.labelled).__name__}")
    if not episode.labelled and (episode.success or episode.done.any()):
        fail("an unlabelled episode must have success False and all done labels 0")


def _tasks_table(tasks: list[str]) -> pa.Table:
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks)})

    # pandas metadata naming "task" as the index: LeRobot reads this file with pd.read_parquet and
    # looks tasks up by string (tasks.loc[task].task_index), as if pandas had written it.
    def column(name: str | None, pandas_type: str, numpy_type: str) -> dict[str, Any]:
        return {
            "name": name,
            "field_name": name,
            "pandas_type": pandas_type,
            "numpy_type": numpy_type,
            "metadata": None,
        }

    pandas = {
        "index_columns": ["task"],
        "column_indexes": [{**column(None, "unicode", "object"), "metadata": {"encoding": "UTF-8"}}],
        "columns": [column("task_index", "int64", "int64"), column("task", "unicode", "object")],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({"pandas": json.dumps(pandas)})


def _to_lists(stats: dict[str, Stats]) -> dict[str, dict[str, list]]:
    return {key: {name: value.tolist() for name, value in ft.items()} for key, ft in stats.items()}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False) + "\n")
