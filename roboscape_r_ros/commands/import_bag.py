"""`roboscape-r import-bag`: rosbag2 recordings (MCAP or sqlite3) -> an episode dataset (data/lerobot.py).

    roboscape-r import-bag bags=[run1,run2] camera.topic=/camera/color/image_raw action.source=twist \
        action.topic=/servo/delta_twist_cmds states=[/joint_states] labels.source=topic output=outputs/datasets/arm

The camera sets the clock: every camera frame becomes a dataset frame, converted as camera_ingest
converts it (data/frames.py), unless a stream it needs (the action, a state) has no message at or
before it within ``max_age_s``: then the frame is dropped and counted, per stream and reason
(missing: nothing yet; stale: the last message is too old). Each stream is held: a frame gets the
stream's last message stamped at or before it. Actions come from one topic (``action.source``):
commands as they are (the package's Action, TwistStamped, JointTrajectory, Float64MultiArray), or
deltas of a state stream between consecutive kept frames (JointState positions, PoseStamped pose;
the last frame of an episode gets a zero delta, which training never reads). What an action means
(names, units, scale, limits, mode, period, frame) goes into info.json as ``action_spec``, and what
the import kept and dropped as ``import``.

Episodes never span bags; inside a bag they are split by a String topic (a new text starts one), by a
gap between camera frames, or not at all. Success and done labels come from a Bool topic (the first
frame at or after the first true message of an episode shows success), from a flag per episode, or
are unknown: then the episodes train the world model's dynamics but not its done head.

Everything is read and checked before the dataset is written, and the writer renames a finished
dataset into place, so a bad bag (unreadable or truncated, a topic missing, an unknown encoding,
stamps that go back) ends with one line naming it and leaves no dataset behind.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.contract.action_spec import MODE_NAMES
from roboscape_r_ros.contract.adapters import quat_multiply, rpy_from_quat
from roboscape_r_ros.data.alignment import hold_last, state_names
from roboscape_r_ros.data.bag_messages import BagError, CameraStream, Stream, connection_of, open_bag, read_topics
from roboscape_r_ros.data.done_labels import done_labels
from roboscape_r_ros.data.lerobot import KINDS, DatasetSummary, DatasetWriter, Episode
from roboscape_r_ros.data.message_values import (
    ACTION,
    ARRAY,
    BOOL,
    CAMERA_TYPES,
    JOINT_STATE,
    POSE,
    STRING,
    TRAJECTORY,
    TWIST,
)

ActionSource = Literal["action", "twist", "trajectory", "array", "joint_deltas", "pose_deltas"]
SOURCE_TYPES = {
    "action": ACTION,
    "twist": TWIST,
    "trajectory": TRAJECTORY,
    "array": ARRAY,
    "joint_deltas": JOINT_STATE,
    "pose_deltas": POSE,
}
STATE_TYPES = (JOINT_STATE, POSE)
POSE_DELTA_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw")
NO_STATE = ("time_s",)  # observation.state without state topics: the frame's time in its episode


@dataclass
class CameraOptions:
    topic: str = option(
        "/camera/image_raw",
        help="sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) or "
        "CompressedImage (jpeg, png) topic; its frames set the dataset's clock",
    )
    name: str = option("camera", help="camera name in the dataset (observation.images.<name>)")
    size: int = option(
        64, help="side of the square frames: centre-cropped and resized as camera_ingest does", low=8, high=1024
    )
    interpolation: Literal["area", "linear", "nearest"] = option("area", help="OpenCV resize filter")


@dataclass
class ActionOptions:
    source: ActionSource = option(
        "action",
        help="action: roboscape_r_ros/Action; twist: TwistStamped; trajectory: JointTrajectory (first point); "
        "array: Float64MultiArray; joint_deltas / pose_deltas: change of a JointState / PoseStamped stream "
        "from each kept frame to the next",
    )
    topic: str = option("/action", help="topic of the action source")
    names: list[str] = option([], help="action names (needed for array; empty: from the messages)")
    units: list[str] = option([], help="action units (empty: from the source; array: 1, joint_deltas: rad)")
    scale: list[float] = option(
        [],
        help="physical quantity per stored unit per dimension, stored = physical / scale (empty: 1; "
        "source=action takes the scale its messages carry)",
    )
    mode: Literal["absolute", "delta", "velocity"] = option("absolute", help="what array values are")


@dataclass
class EpisodeOptions:
    split: Literal["bag", "gap", "topic"] = option(
        "bag",
        help="bag: one episode per bag; gap: a new one after gap_s without a camera frame; topic: a new "
        "one at every new text on topic",
    )
    gap_s: float = option(1.0, help="split=gap: seconds between camera frames that start a new episode", above=0.0)
    topic: str = option("/episode", help="split=topic: std_msgs/String topic of episode ids")


@dataclass
class LabelOptions:
    source: Literal["unknown", "topic", "flags"] = option(
        "unknown",
        help="unknown: no success/done labels (the done head skips these episodes); topic: a "
        "std_msgs/Bool topic, true once success shows; flags: one success flag per episode",
    )
    topic: str = option("/success", help="source=topic: the Bool topic")
    success: list[bool] = option([], help="source=flags: success of each episode, in order (bags, then time)")


@dataclass
class ImportBagConfig:
    bags: list[str] = option([], help="rosbag2 folders (MCAP or sqlite3 storage) or .mcap/.db3 files, in order")
    output: str = option("outputs/datasets/imported", help="dataset folder")
    overwrite: bool = option(False, help="replace an existing dataset at output")
    camera: CameraOptions = option(CameraOptions(), help="the camera topic and the frames made from it")
    action: ActionOptions = option(ActionOptions(), help="where actions come from and what they mean")
    states: list[str] = option(
        [],
        help="JointState (positions) and PoseStamped topics read into observation.state, in order "
        "(empty: time_s, the frame's time in its episode)",
    )
    max_age_s: float = option(
        0.1, help="a frame is kept when every stream's last message is at most this old", above=0.0
    )
    episodes: EpisodeOptions = option(EpisodeOptions(), help="how the bags are cut into episodes")
    labels: LabelOptions = option(LabelOptions(), help="where success and done labels come from")
    task: str = option("imported", help="task name of the episodes")
    instruction: str = option("", help="instruction of the episodes (empty: the task name)")
    kind: str = option("expert", help="how the episodes were made: expert, noisy, failed or random")
    fps: int = option(0, help="frame rate written into the dataset (0: the camera's median rate)", low=0)
    video: bool = option(False, help="store frames as video (lossy) instead of lossless PNG")

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.action.source == "action" and self.action.scale:
            raise ConfigError("action.scale: Action messages carry their own scale (leave action.scale empty)")
        if self.action.source == "array" and not self.action.names:
            raise ConfigError("action.source=array needs action.names (Float64MultiArray has none)")
        if any(s == 0 for s in self.action.scale):
            raise ConfigError("action.scale must not contain 0")


@dataclass
class _Segment:
    """Kept frames of one episode in one bag."""

    frames: np.ndarray  # uint8 [T,S,S,3]
    stamps: np.ndarray  # int64 [T]
    commands: np.ndarray  # float64 [T,d] the action stream's values (deltas are taken later)
    states: np.ndarray  # float64 [T,s] (empty columns without state topics)
    success_stamp: int | None  # first true on the labels topic inside the episode


@dataclass
class _BagRead:
    segments: list[_Segment]
    camera_frames: int
    camera_stamps: np.ndarray
    dropped: Counter  # "<topic> missing|stale" -> frames
    max_age_ns: dict[str, int]
    action: Stream
    states: list[Stream]


@dataclass(frozen=True)
class BagImportSummary:
    dataset: DatasetSummary
    bags: int
    bag_bytes: int
    camera_frames: int
    kept_frames: int
    dropped: dict[str, int]  # "<topic> missing|stale" -> frames (a frame may count for several streams)
    max_age_s: dict[str, float]  # largest age of a held message in a kept frame, per stream
    max_age_limit_s: float
    labels: str
    seconds: float
    action_spec: dict[str, Any] = field(repr=False)

    def __str__(self) -> str:
        dropped = self.camera_frames - self.kept_frames
        why = ", ".join(f"{key} {n}" for key, n in self.dropped.items())
        ages = ", ".join(f"{topic} {1000 * age:.1f} ms" for topic, age in self.max_age_s.items())
        spec = self.action_spec
        return "\n".join(
            [
                str(self.dataset),
                f"import    {self.bags} bags, {self.bag_bytes / 1e9:.3f} GB in {self.seconds:.1f} s "
                f"({self.seconds / max(self.bag_bytes / 1e9, 1e-9):.1f} s per GB)",
                f"kept      {self.kept_frames} of {self.camera_frames} camera frames; dropped {dropped}"
                + (f" ({why})" if why else ""),
                f"aligned   hold-last within {1000 * self.max_age_limit_s:.0f} ms; largest age used: {ages}",
                f"actions   {spec['source']} from {spec['topic']}: {', '.join(spec['names'])} "
                f"({', '.join(spec['units'])}), {spec['mode']}",
                f"labels    {self.labels}",
            ]
        )


def run_import_bag(cfg: ImportBagConfig) -> BagImportSummary:
    start = time.perf_counter()
    if not cfg.bags:
        raise ConfigError("no bags given (bags=[path, ...])")
    paths = [Path(p) for p in cfg.bags]
    reads = [_read_bag(path, cfg) for path in paths]
    fps = cfg.fps or _measured_fps(reads, paths[0])
    action_spec = _action_spec(cfg, reads, paths, fps)
    names = state_names(reads[0].states) or list(NO_STATE)
    for path, read in zip(paths[1:], reads[1:]):
        if state_names(read.states) != state_names(reads[0].states):
            raise BagError(f"{path}: state names differ from those of {paths[0]}")
    segments = [segment for read in reads for segment in read.segments]
    if not segments:
        raise BagError(f"{paths[0]}: no frame kept in any bag (is max_age_s={cfg.max_age_s} too small?)")
    successes = _success_frames(cfg, segments)

    writer = DatasetWriter(
        Path(cfg.output),
        fps=fps,
        camera=cfg.camera.name,
        image_shape=(cfg.camera.size, cfg.camera.size, 3),
        action_names=action_spec["names"],
        state_names=names,
        video=cfg.video,
        robot_type="ros",
        overwrite=cfg.overwrite,
    )
    with writer:
        for segment, success_frame in zip(segments, successes, strict=True):
            writer.add_episode(_episode(cfg, segment, success_frame, action_spec))
        camera_frames = sum(r.camera_frames for r in reads)
        kept = sum(len(s.stamps) for s in segments)
        dropped = sum((r.dropped for r in reads), Counter())
        max_age = {topic: max(r.max_age_ns.get(topic, 0) for r in reads) / 1e9 for topic in reads[0].max_age_ns}
        labels = _labels_text(cfg, successes)
        record = {
            "bags": [str(p) for p in paths],
            "camera_topic": cfg.camera.topic,
            "state_topics": list(cfg.states),
            "camera_frames": camera_frames,
            "kept_frames": kept,
            "dropped": dict(sorted(dropped.items())),
            "max_age_limit_s": cfg.max_age_s,
            "max_age_s": max_age,
            "episode_split": cfg.episodes.split,
            "labels": labels,
        }
        dataset = writer.finalize(extra_info={"action_spec": action_spec, "import": record})
    return BagImportSummary(
        dataset=dataset,
        bags=len(paths),
        bag_bytes=sum(_size(p) for p in paths),
        camera_frames=camera_frames,
        kept_frames=kept,
        dropped=dict(sorted(dropped.items())),
        max_age_s=max_age,
        max_age_limit_s=cfg.max_age_s,
        labels=labels,
        seconds=time.perf_counter() - start,
        action_spec=action_spec,
    )


def _read_bag(path: Path, cfg: ImportBagConfig) -> _BagRead:
    wanted: dict[str, tuple[str, ...]] = {cfg.action.topic: (SOURCE_TYPES[cfg.action.source],)}
    for topic in cfg.states:
        wanted.setdefault(topic, STATE_TYPES)
    if cfg.episodes.split == "topic":
        wanted.setdefault(cfg.episodes.topic, (STRING,))
    if cfg.labels.source == "topic":
        wanted.setdefault(cfg.labels.topic, (BOOL,))
    reader, store = open_bag(path)
    try:
        camera = connection_of(reader, path, cfg.camera.topic, CAMERA_TYPES)
        others = [connection_of(reader, path, topic, types) for topic, types in wanted.items()]
        images, streams = read_topics(reader, store, path, camera, others, cfg.camera.size, cfg.camera.interpolation)
    finally:
        reader.close()
    if len(images.stamps) == 0:
        raise BagError(f"{path}: topic {cfg.camera.topic} has no messages")
    action, states = streams[cfg.action.topic], [streams[topic] for topic in cfg.states]
    held = {s.topic: s for s in [action, *states]}  # a topic used twice is held once
    keep = np.ones(len(images.stamps), bool)
    rows: dict[str, np.ndarray] = {}
    dropped: Counter[str] = Counter()
    ages: dict[str, np.ndarray] = {}
    for topic, stream in held.items():
        hold = hold_last(stream.stamps, images.stamps, round(cfg.max_age_s * 1e9))
        dropped.update({f"{topic} missing": int(hold.missing.sum()), f"{topic} stale": int(hold.stale.sum())})
        keep &= hold.usable
        rows[topic] = hold.row
        ages[topic] = hold.age_ns
    dropped = Counter({key: n for key, n in dropped.items() if n})
    max_age = {topic: int(age[keep].max(initial=0)) for topic, age in ages.items()}

    episode = _episode_numbers(cfg, images, streams)
    labels = streams.get(cfg.labels.topic) if cfg.labels.source == "topic" else None
    state_columns = [s.values[rows[s.topic]] for s in states]
    segments = []
    for number in np.unique(episode):
        frames = np.flatnonzero(keep & (episode == number))
        if not frames.size:
            continue
        in_episode = np.flatnonzero(episode == number)
        span = (images.stamps[in_episode[0]], images.stamps[in_episode[-1]])
        segments.append(
            _Segment(
                frames=images.frames[frames],
                stamps=images.stamps[frames],
                commands=action.values[rows[action.topic][frames]],
                states=np.concatenate([c[frames] for c in state_columns], 1)
                if state_columns
                else np.empty((len(frames), 0)),
                success_stamp=_first_true(labels, span) if labels is not None else None,
            )
        )
    return _BagRead(
        segments=segments,
        camera_frames=len(images.stamps),
        camera_stamps=images.stamps,
        dropped=dropped,
        max_age_ns=max_age,
        action=action,
        states=states,
    )


def _episode_numbers(cfg: ImportBagConfig, images: CameraStream, streams: dict[str, Stream]) -> np.ndarray:
    """int [frames]: which episode of the bag each camera frame belongs to (0, 1, ...)."""
    split = cfg.episodes.split
    if split == "bag":
        return np.zeros(len(images.stamps), np.int64)
    if split == "gap":
        return np.concatenate([[0], np.cumsum(np.diff(images.stamps) > round(cfg.episodes.gap_s * 1e9))])
    ids = streams[cfg.episodes.topic]
    # frames before the first id belong to the episode it names
    row = np.maximum(np.searchsorted(ids.stamps, images.stamps, side="right") - 1, 0)
    texts = np.array(ids.texts, dtype=object)[row]
    return np.concatenate([[0], np.cumsum(texts[1:] != texts[:-1])])


def _first_true(labels: Stream, span: tuple[int, int]) -> int | None:
    """Stamp of the first true message inside an episode's time span, or None."""
    inside = (labels.values[:, 0] > 0.5) & (labels.stamps >= span[0]) & (labels.stamps <= span[1])
    return int(labels.stamps[inside][0]) if inside.any() else None


def _success_frames(cfg: ImportBagConfig, segments: list[_Segment]) -> list[int | None]:
    """Per episode, the first frame that shows success (None: failed or unknown)."""
    if cfg.labels.source == "flags":
        if len(cfg.labels.success) != len(segments):
            raise ConfigError(f"labels.success has {len(cfg.labels.success)} flags for {len(segments)} episodes")
        return [len(s.stamps) - 1 if flag else None for s, flag in zip(segments, cfg.labels.success)]
    if cfg.labels.source == "topic":
        shown = [
            np.flatnonzero(s.stamps >= s.success_stamp) if s.success_stamp is not None else np.empty(0, np.int64)
            for s in segments
        ]
        return [int(frames[0]) if len(frames) else None for frames in shown]
    return [None] * len(segments)


def _labels_text(cfg: ImportBagConfig, successes: list[int | None]) -> str:
    if cfg.labels.source == "unknown":
        return "unknown: the episodes train the dynamics, not the done head (labels.source=topic or flags sets them)"
    won = sum(s is not None for s in successes)
    where = f"topic {cfg.labels.topic}" if cfg.labels.source == "topic" else "labels.success"
    return f"from {where}: {won} of {len(successes)} episodes succeeded"


def _episode(cfg: ImportBagConfig, segment: _Segment, success_frame: int | None, spec: dict) -> Episode:
    length = len(segment.stamps)
    labelled = cfg.labels.source != "unknown"
    done, subtask_index = done_labels(length, [success_frame] if success_frame is not None else [])
    states = segment.states if segment.states.shape[1] else ((segment.stamps - segment.stamps[0]) * 1e-9)[:, None]
    actions = _physical_actions(cfg.action.source, segment.commands)
    if cfg.action.source != "action":  # Action values are stored as sent (physical = value * scale)
        actions = actions / np.asarray(spec["scale"])
    return Episode(
        frames=segment.frames,
        actions=actions.astype(np.float32),
        states=states.astype(np.float32),
        done=done,
        subtask_index=subtask_index,
        task=cfg.task,
        instruction=cfg.instruction or cfg.task,
        success=success_frame is not None,
        kind=cfg.kind,
        labelled=labelled,
    )


def _physical_actions(source: str, commands: np.ndarray) -> np.ndarray:
    """Per kept frame, the action stream's values, or its change to the next kept frame (0 after the last)."""
    if source == "joint_deltas":
        return np.concatenate([np.diff(commands, axis=0), np.zeros_like(commands[:1])])
    if source == "pose_deltas":
        deltas = np.zeros((len(commands), len(POSE_DELTA_NAMES)))
        for t in range(len(commands) - 1):
            now, after = commands[t], commands[t + 1]
            inverse = now[3:] * np.array([-1.0, -1.0, -1.0, 1.0]) / np.linalg.norm(now[3:]) ** 2
            # the adapters apply a rotation delta on the left (world frame): after = delta * now
            deltas[t] = np.concatenate([after[:3] - now[:3], rpy_from_quat(quat_multiply(after[3:], inverse))])
        return deltas
    return commands


def _action_spec(cfg: ImportBagConfig, reads: list[_BagRead], paths: list[Path], fps: int) -> dict[str, Any]:
    """What the stored actions mean; every bag's action stream must agree with the first's. Deltas act
    over one frame period."""
    options, first = cfg.action, reads[0].action
    for path, read in zip(paths[1:], reads[1:]):
        if (read.action.names, read.action.facts) != (first.names, first.facts):
            raise BagError(f"{path}: {options.topic} names, units or scale differ from those in {paths[0]}")
    width = len(POSE_DELTA_NAMES) if options.source == "pose_deltas" else first.values.shape[1]
    facts = first.facts
    natural = {
        "action": (first.names, facts.get("units"), MODE_NAMES.get(facts["mode"]) if "mode" in facts else None),
        "twist": (first.names, ("m/s",) * 3 + ("rad/s",) * 3, "velocity"),
        "trajectory": (
            first.names,
            ("rad" if facts.get("mode") == "absolute" else "rad/s",) * width,
            facts.get("mode"),
        ),
        "array": ((), ("1",) * width, options.mode),
        "joint_deltas": (first.names, ("rad",) * width, "delta"),
        "pose_deltas": (POSE_DELTA_NAMES, ("m",) * 3 + ("rad",) * 3, "delta"),
    }[options.source]
    names, units, mode = natural
    if mode is None:
        raise BagError(f"{paths[0]}: {options.topic} has an unknown Action mode {facts.get('mode')}")
    names = tuple(options.names) or names
    units = tuple(options.units) or tuple(units or ()) or ("1",) * width
    scale = tuple(options.scale) or facts.get("scale") or (1.0,) * width
    for key, value in (("names", names), ("units", units), ("scale", scale)):
        if len(value) != width:
            raise BagError(f"{paths[0]}: {options.topic} carries {width} values, action {key} has {len(value)}")
    spec = {
        "source": options.source,
        "topic": options.topic,
        "message_type": SOURCE_TYPES[options.source].replace("/msg/", "/"),
        "names": list(names),
        "units": list(units),
        "scale": list(scale),
        "mode": mode,
        "period_s": 1.0 / fps if mode == "delta" and "deltas" in options.source else facts.get("period_s") or None,
        "frame_id": facts.get("frame_id", ""),
    }
    if facts.get("lower"):
        spec |= {"lower": list(facts["lower"]), "upper": list(facts["upper"])}
    return spec


def _measured_fps(reads: list[_BagRead], path: Path) -> int:
    gaps = np.concatenate([np.diff(r.camera_stamps) for r in reads])
    if not gaps.size:
        raise BagError(f"{path}: one camera frame cannot give a frame rate (set fps)")
    return max(1, round(1e9 / float(np.median(gaps))))


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
