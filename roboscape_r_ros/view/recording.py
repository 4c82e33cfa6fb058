"""A rosbag2 folder holding one MCAP file of standard ROS 2 messages, written with ``rosbags``.

Foxglove opens the .mcap file (the message definitions are inside it); ``ros2 bag play <folder>``
replays it into a running graph, e.g. into RViz. Only standard, inert message types are written:
sensor_msgs/Image (rgb8), sensor_msgs/JointState (named vectors: states and actions, so each
dimension is plotted by its name and no arm driver acts on a replay), std_msgs/Float32, Bool and String.

Written atomically: into a hidden sibling folder that is renamed into place when the block ends
without an error, so a recording on disk is complete or absent.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from roboscape_r_ros.errors import RoboscapeError


class RecordingError(RoboscapeError):
    """The recording cannot be written (target exists, unwritable folder)."""


class Recording:
    """Use as a context manager::

    with Recording(Path("outputs/views/run")) as rec:
        rec.image("/wm/real", t_ns, frame)
    rec.path / rec.mcap, rec.counts (messages per topic)
    """

    def __init__(self, path: Path, overwrite: bool = False):
        self.path = Path(path)
        if self.path.exists() and not (overwrite and (self.path / "metadata.yaml").is_file()):
            why = "exists" if not overwrite else "exists and is not a rosbag2 folder, refusing to replace it"
            raise RecordingError(f"{self.path}: {why} (overwrite=true replaces an earlier recording)")
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._writer = Writer(self._tmp, version=9, storage_plugin=StoragePlugin.MCAP)
            self._writer.open()
        except OSError as err:
            raise RecordingError(f"{self.path}: cannot write the recording ({err})") from None
        self._store = get_typestore(Stores.ROS2_KILTED)
        self._t = self._store.types
        self._connections: dict[str, Connection] = {}
        self.counts: Counter[str] = Counter()
        self.types: dict[str, str] = {}
        self.end_ns = 0

    @property
    def mcap(self) -> Path:
        return self.path / f"{self.path.name}.mcap"

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._writer.close()
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        (self._tmp / f"{self._tmp.name}.mcap").rename(self._tmp / self.mcap.name)
        metadata = self._tmp / "metadata.yaml"
        metadata.write_text(metadata.read_text().replace(f"{self._tmp.name}.mcap", self.mcap.name))
        if self.path.exists():
            shutil.rmtree(self.path)
        self._tmp.rename(self.path)

    def _write(self, topic: str, t_ns: int, msg) -> None:
        msgtype = msg.__msgtype__
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self._store)
            self.types[topic] = msgtype
        self._writer.write(self._connections[topic], t_ns, self._store.serialize_cdr(msg, msgtype))
        self.counts[topic] += 1
        self.end_ns = max(self.end_ns, t_ns)

    def _header(self, t_ns: int, frame_id: str):
        stamp = self._t["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9)
        return self._t["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    def image(self, topic: str, t_ns: int, rgb: np.ndarray, frame_id: str = "camera") -> None:
        height, width = rgb.shape[:2]
        msg = self._t["sensor_msgs/msg/Image"](
            header=self._header(t_ns, frame_id),
            height=height,
            width=width,
            encoding="rgb8",
            is_bigendian=0,
            step=width * 3,
            data=np.ascontiguousarray(rgb, np.uint8).reshape(-1),
        )
        self._write(topic, t_ns, msg)

    def named(self, topic: str, t_ns: int, names: Sequence[str], values: np.ndarray) -> None:
        msg = self._t["sensor_msgs/msg/JointState"](
            header=self._header(t_ns, ""),
            name=list(names),
            position=np.asarray(values, np.float64),
            velocity=np.zeros(0),
            effort=np.zeros(0),
        )
        self._write(topic, t_ns, msg)

    def scalar(self, topic: str, t_ns: int, value: float) -> None:
        self._write(topic, t_ns, self._t["std_msgs/msg/Float32"](data=float(value)))

    def flag(self, topic: str, t_ns: int, value: bool) -> None:
        self._write(topic, t_ns, self._t["std_msgs/msg/Bool"](data=bool(value)))

    def text(self, topic: str, t_ns: int, value: str) -> None:
        self._write(topic, t_ns, self._t["std_msgs/msg/String"](data=value))
