"""rosbag2 topics -> arrays: every message of a topic read into stamps and a float vector per message
(or a model frame per camera message), for ``bag_import``.

Message types and what a message becomes:

    sensor_msgs/Image, CompressedImage (jpeg, png)   frame: decoded, centre-cropped, resized (data/frames.py)
    every other type                                 values as data/message_values.py reads them

A message's stamp is its header stamp, or the time the bag recorded it where it has no header
(Float64MultiArray, Bool, String) or a zero stamp (JointTrajectory's "start now"). Names and the
facts a value depends on (units, scale, mode) must stay the same over a topic. Types come from ROS 2
Kilted's definitions, plus the definitions the bag carries (the package's Action).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from roboscape_r_ros.data.frames import FrameError, decode_buffer, to_model_frame
from roboscape_r_ros.data.message_values import IMAGE, reading
from roboscape_r_ros.errors import RoboscapeError

COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


class BagError(RoboscapeError):
    """A bag that cannot be imported: unreadable, a topic missing or of a wrong type, bad stamps or data."""


@dataclass
class Stream:
    """Every message of one topic, in bag order."""

    topic: str
    msgtype: str
    stamps: np.ndarray  # int64 [n] ns
    values: np.ndarray  # float64 [n, d]
    names: tuple[str, ...]  # d names
    facts: dict[str, Any]  # what the values mean beyond their names (units, scale, mode, frame)
    texts: list[str]  # String topics: the text of each message


@dataclass
class CameraStream:
    topic: str
    stamps: np.ndarray  # int64 [n] ns
    frames: np.ndarray  # uint8 [n, size, size, 3]


def open_bag(path: Path) -> tuple[Reader, Typestore]:
    """An open reader and a typestore that decodes every topic the bag has a definition for."""
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, FileNotFoundError, OSError) as err:
        raise BagError(f"{path}: not a readable rosbag2 ({err})") from None
    store = get_typestore(Stores.ROS2_KILTED)
    for connection in reader.connections:
        if connection.msgtype not in store.types and connection.msgdef.data:
            try:
                store.register(get_types_from_msg(connection.msgdef.data, connection.msgtype))
            except TypesysError as err:
                raise BagError(f"{path}: definition of {connection.msgtype} unreadable ({err})") from None
    return reader, store


def connection_of(reader: Reader, path: Path, topic: str, types: Iterable[str]) -> Connection:
    types = tuple(types)
    found = [c for c in reader.connections if c.topic == topic]
    if not found:
        have = ", ".join(sorted({c.topic for c in reader.connections})) or "none"
        raise BagError(f"{path}: no topic {topic} in the bag (topics: {have})")
    if found[0].msgtype not in types:
        want = " or ".join(t.replace("/msg/", "/") for t in types)
        raise BagError(f"{path}: topic {topic} is {found[0].msgtype.replace('/msg/', '/')}, expected {want}")
    return found[0]


def read_topics(
    reader: Reader,
    store: Typestore,
    path: Path,
    camera: Connection,
    others: list[Connection],
    size: int,
    interpolation: str,
) -> tuple[CameraStream, dict[str, Stream]]:
    """One pass over the bag: the camera's frames (converted as they are read, so a large bag never
    sits in memory) and every other topic's vectors."""
    stamps: dict[str, list[int]] = {c.topic: [] for c in [camera, *others]}
    rows: dict[str, list[Any]] = {c.topic: [] for c in others}
    frames: list[np.ndarray] = []
    try:
        for connection, log_time, raw in reader.messages([camera, *others]):
            topic = connection.topic
            where = f"{path}: {topic} message {len(stamps[topic])}"
            try:
                msg = store.deserialize_cdr(raw, connection.msgtype)
            except Exception as err:  # noqa: BLE001 -- any decoding failure of foreign bytes is a bad bag
                raise BagError(f"{where}: cannot be decoded ({type(err).__name__}: {err})") from None
            stamps[topic].append(stamp_ns(msg, log_time))
            if connection is camera:
                frames.append(camera_frame(msg, connection.msgtype, size, interpolation, where))
            else:
                rows[topic].append(reading(msg, connection.msgtype))
    except ReaderError as err:
        raise BagError(f"{path}: unreadable ({err})") from None
    shape = (0, size, size, 3)
    camera_stream = CameraStream(
        camera.topic,
        _checked_stamps(path, camera.topic, stamps[camera.topic]),
        np.stack(frames) if frames else np.empty(shape, np.uint8),
    )
    streams = {c.topic: _stream(path, c, stamps[c.topic], rows[c.topic]) for c in others}
    return camera_stream, streams


def stamp_ns(msg: Any, log_time: int) -> int:
    header = getattr(msg, "header", None)
    if header is None or (header.stamp.sec == 0 and header.stamp.nanosec == 0):
        return log_time
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def camera_frame(msg: Any, msgtype: str, size: int, interpolation: str, where: str) -> np.ndarray:
    try:
        if msgtype == IMAGE:
            rgb = decode_buffer(msg.data, width=msg.width, height=msg.height, step=msg.step, encoding=msg.encoding)
        else:
            rgb = _decode_compressed(msg.format, msg.data)
        return to_model_frame(rgb, size, interpolation)
    except FrameError as err:
        raise BagError(f"{where}: {err}") from None


def _decode_compressed(image_format: str, data: np.ndarray) -> np.ndarray:
    if not any(name in image_format.lower() for name in COMPRESSED_FORMATS):
        raise FrameError("encoding", f"compressed format '{image_format}' is not supported (jpeg or png)")
    rgb = cv2.imdecode(np.asarray(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    if rgb is None:
        raise FrameError("data", f"data is not a decodable {image_format} image")
    return rgb


def _stream(path: Path, connection: Connection, stamps: list[int], rows: list[tuple]) -> Stream:
    topic = connection.topic
    if not rows:
        raise BagError(f"{path}: topic {topic} has no messages")
    _, names, facts, _ = rows[0]
    width = len(rows[0][0])
    if names and len(names) != width:
        raise BagError(f"{path}: {topic} message 0 names {len(names)} values but carries {width}")
    for index, (values, other_names, other_facts, _) in enumerate(rows):
        if other_names != names or len(values) != width or other_facts != facts:
            raise BagError(
                f"{path}: {topic} message {index} has other names, size, units, scale or mode than message 0 "
                f"({list(other_names)} vs {list(names)})"
            )
    values = np.array([r[0] for r in rows], np.float64).reshape(len(rows), width)
    if not np.isfinite(values).all():
        raise BagError(f"{path}: {topic} message {int(np.argwhere(~np.isfinite(values))[0][0])} holds NaN or inf")
    return Stream(
        topic, connection.msgtype, _checked_stamps(path, topic, stamps), values, names, facts, [r[3] for r in rows]
    )


def _checked_stamps(path: Path, topic: str, stamps: list[int]) -> np.ndarray:
    array = np.asarray(stamps, np.int64)
    if len(array) and (back := np.flatnonzero(np.diff(array) <= 0)).size:
        i = int(back[0]) + 1
        raise BagError(
            f"{path}: {topic} stamps are not increasing (message {i} at {array[i]} ns follows {array[i - 1]} ns)"
        )
    return array
