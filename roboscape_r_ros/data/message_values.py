"""ROS messages -> plain values: what a message of each type becomes as a float vector with names, and
the facts the values depend on (units, scale, mode, frame). Duck-typed: the same code reads messages
deserialized from a bag (rosbags, data/bag_messages.py) and live rclpy messages (camera_ingest's
recording), so an imported bag and a recorded session name and store a stream alike.

    sensor_msgs/JointState         positions, named by joint
    geometry_msgs/PoseStamped      x, y, z, qx, qy, qz, qw
    geometry_msgs/TwistStamped     vx, vy, vz, wx, wy, wz (m/s, rad/s)
    trajectory_msgs/JointTrajectory  the first point's positions (or velocities when it has none)
    std_msgs/Float64MultiArray     data
    roboscape_r_ros/Action         values, with the message's names, units, scale, limits and mode
    std_msgs/Bool, std_msgs/String  1.0/0.0, and the text (episode ids)
"""

from __future__ import annotations

from typing import Any

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
POSE = "geometry_msgs/msg/PoseStamped"
TWIST = "geometry_msgs/msg/TwistStamped"
TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
ARRAY = "std_msgs/msg/Float64MultiArray"
ACTION = "roboscape_r_ros/msg/Action"
BOOL = "std_msgs/msg/Bool"
STRING = "std_msgs/msg/String"
CAMERA_TYPES = (IMAGE, COMPRESSED_IMAGE)


def reading(msg: Any, msgtype: str) -> tuple[list[float], tuple[str, ...], dict[str, Any], str]:
    """(values, names, facts, text) of one message."""
    if msgtype == JOINT_STATE:
        return list(msg.position), tuple(msg.name), {}, ""
    if msgtype == POSE:
        p, q = msg.pose.position, msg.pose.orientation
        return [p.x, p.y, p.z, q.x, q.y, q.z, q.w], ("x", "y", "z", "qx", "qy", "qz", "qw"), _frame(msg), ""
    if msgtype == TWIST:
        v, w = msg.twist.linear, msg.twist.angular
        return [v.x, v.y, v.z, w.x, w.y, w.z], ("vx", "vy", "vz", "wx", "wy", "wz"), _frame(msg), ""
    if msgtype == TRAJECTORY:
        point = msg.points[0] if len(msg.points) else None
        positions = point is not None and len(point.positions) > 0
        values = [] if point is None else list(point.positions if positions else point.velocities)
        period = 0.0 if point is None else point.time_from_start.sec + point.time_from_start.nanosec * 1e-9
        return values, tuple(msg.joint_names), {"mode": "absolute" if positions else "velocity", "period_s": period}, ""
    if msgtype == ARRAY:
        return list(msg.data), (), {}, ""
    if msgtype == ACTION:
        facts = {
            "units": tuple(msg.units),
            "scale": tuple(msg.scale.tolist()),
            "lower": tuple(msg.lower.tolist()),
            "upper": tuple(msg.upper.tolist()),
            "mode": int(msg.mode),
            "period_s": msg.duration.sec + msg.duration.nanosec * 1e-9,
            **_frame(msg),
        }
        return list(msg.values), tuple(msg.names), facts, ""
    if msgtype == BOOL:
        return [float(msg.data)], ("value",), {}, ""
    if msgtype == STRING:
        return [0.0], (), {}, msg.data
    raise ValueError(f"message type {msgtype} is not one this package reads as values")


def _frame(msg: Any) -> dict[str, str]:
    return {"frame_id": msg.header.frame_id}
