"""rosbag2 files for tests and the import benchmark: the message types import-bag reads, from numbers.

    with BagWriter(path, "mcap") as bag:          # or "sqlite3"
        bag.image("/camera/image_raw", stamp_ns, rgb)
        bag.joint_state("/joint_states", stamp_ns, ["j1", "j2"], [0.1, 0.2])

Every message is logged at its stamp unless ``log_ns`` says otherwise. Connections are added on first
use; the package's Action type comes from msg/Action.msg.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from helpers import REPO

ACTION_MSG = REPO / "msg" / "Action.msg"
STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagWriter:
    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        self.store = get_typestore(Stores.ROS2_KILTED)
        self.store.register(get_types_from_msg(ACTION_MSG.read_text(), "roboscape_r_ros/msg/Action"))
        self.t = self.store.types
        self.writer = Writer(Path(path), version=9, storage_plugin=STORAGE[storage])
        self.writer.open()
        self.connections = {}

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.writer.close()

    def write(self, topic: str, msg, log_ns: int) -> None:
        msgtype = msg.__msgtype__
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store)
        self.writer.write(self.connections[topic], log_ns, self.store.serialize_cdr(msg, msgtype))

    def header(self, stamp_ns: int, frame_id: str = ""):
        stamp = self.t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        return self.t["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    def duration(self, seconds: float):
        ns = round(seconds * 1e9)
        return self.t["builtin_interfaces/msg/Duration"](sec=ns // 10**9, nanosec=ns % 10**9)

    def image(self, topic: str, stamp_ns: int, pixels: np.ndarray, encoding: str = "rgb8", log_ns=None) -> None:
        height, width = pixels.shape[:2]
        step = pixels[0].size
        msg = self.t["sensor_msgs/msg/Image"](
            header=self.header(stamp_ns, "camera"),
            height=height,
            width=width,
            encoding=encoding,
            is_bigendian=0,
            step=step,
            data=np.ascontiguousarray(pixels).reshape(-1),
        )
        self.write(topic, msg, stamp_ns if log_ns is None else log_ns)

    def compressed(self, topic: str, stamp_ns: int, rgb: np.ndarray, image_format: str = "jpeg") -> None:
        ok, data = cv2.imencode(".png" if image_format == "png" else ".jpg", np.ascontiguousarray(rgb[..., ::-1]))
        assert ok
        msg = self.t["sensor_msgs/msg/CompressedImage"](
            header=self.header(stamp_ns, "camera"), format=image_format, data=data.reshape(-1)
        )
        self.write(topic, msg, stamp_ns)

    def joint_state(self, topic: str, stamp_ns: int, names: Sequence[str], positions: Sequence[float]) -> None:
        msg = self.t["sensor_msgs/msg/JointState"](
            header=self.header(stamp_ns),
            name=list(names),
            position=np.asarray(positions, np.float64),
            velocity=np.zeros(0),
            effort=np.zeros(0),
        )
        self.write(topic, msg, stamp_ns)

    def pose(self, topic: str, stamp_ns: int, xyz: Sequence[float], quaternion: Sequence[float]) -> None:
        point = self.t["geometry_msgs/msg/Point"](*xyz)
        orientation = self.t["geometry_msgs/msg/Quaternion"](*quaternion)
        pose = self.t["geometry_msgs/msg/Pose"](position=point, orientation=orientation)
        self.write(
            topic, self.t["geometry_msgs/msg/PoseStamped"](header=self.header(stamp_ns, "world"), pose=pose), stamp_ns
        )

    def twist(self, topic: str, stamp_ns: int, linear: Sequence[float], angular: Sequence[float]) -> None:
        vector = self.t["geometry_msgs/msg/Vector3"]
        twist = self.t["geometry_msgs/msg/Twist"](linear=vector(*linear), angular=vector(*angular))
        self.write(
            topic,
            self.t["geometry_msgs/msg/TwistStamped"](header=self.header(stamp_ns, "tool0"), twist=twist),
            stamp_ns,
        )

    def trajectory(self, topic: str, log_ns: int, names: Sequence[str], positions: Sequence[float]) -> None:
        """One point, header stamp 0 ("start now", as policy_controller's adapter sends it)."""
        empty = np.zeros(0)
        point = self.t["trajectory_msgs/msg/JointTrajectoryPoint"](
            positions=np.asarray(positions, np.float64),
            velocities=empty,
            accelerations=empty,
            effort=empty,
            time_from_start=self.duration(0.1),
        )
        msg = self.t["trajectory_msgs/msg/JointTrajectory"](
            header=self.header(0), joint_names=list(names), points=[point]
        )
        self.write(topic, msg, log_ns)

    def array(self, topic: str, log_ns: int, data: Sequence[float]) -> None:
        layout = self.t["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
        self.write(
            topic, self.t["std_msgs/msg/Float64MultiArray"](layout=layout, data=np.asarray(data, np.float64)), log_ns
        )

    def action(
        self,
        topic: str,
        stamp_ns: int,
        names: Sequence[str],
        values: Sequence[float],
        *,
        scale=(),
        mode=1,
        units: Sequence[str] = (),
        period_s: float = 0.1,
    ) -> None:
        n = len(names)
        msg = self.t["roboscape_r_ros/msg/Action"](
            header=self.header(stamp_ns, "world"),
            names=list(names),
            units=list(units) or ["m"] * n,
            values=np.asarray(values, np.float64),
            scale=np.asarray(scale, np.float64),
            lower=-np.ones(n),
            upper=np.ones(n),
            mode=mode,
            duration=self.duration(period_s),
            step=0,
            episode_id="",
            source="teleop",
        )
        self.write(topic, msg, stamp_ns)

    def boolean(self, topic: str, log_ns: int, value: bool) -> None:
        self.write(topic, self.t["std_msgs/msg/Bool"](data=value), log_ns)

    def string(self, topic: str, log_ns: int, text: str) -> None:
        self.write(topic, self.t["std_msgs/msg/String"](data=text), log_ns)
