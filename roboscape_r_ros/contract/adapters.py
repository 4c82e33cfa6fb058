"""Action values -> the numbers of standard arm-controller messages (no ROS types here).

The mapping, by dimension name (``ActionSpec.names``):

    linear   x/dx/vx, y/dy/vy, z/dz/vz          (units m, m/s)
    angular  roll/droll/rx/wx, pitch/dpitch/ry/wy, yaw/dyaw/rz/wz   (rad, rad/s)
    other    e.g. gripper: only in the array and trajectory outputs

    twist       DELTA: rate = value * scale / period; VELOCITY: rate = value * scale. Other dims dropped.
    pose        DELTA: target = current pose + value * scale (rotation deltas as roll-pitch-yaw,
                applied in the world frame); ABSOLUTE: target = value * scale (orientation kept
                unless roll/pitch/yaw are dims). Needs the current end-effector pose for DELTA.
    array       value * scale for every dim, in ``names`` order (physical units).
    trajectory  joint-space actions (names are joints): one point in the controller's joint order,
                values taken by name: ABSOLUTE -> positions = value * scale; DELTA -> positions =
                current joint positions + value * scale; VELOCITY -> velocities = value * scale;
                time_from_start = one period.

Which combinations a controller can execute is runtime/gates/adapter_config.py.

A hold (watchdog, e-stop) goes only to the outputs in ``hold_outputs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roboscape_r_ros.contract.action_spec import MODE_ABSOLUTE, MODE_DELTA, MODE_VELOCITY, ActionSpec
from roboscape_r_ros.contract.controller_rules import TrajectoryPoint

LINEAR = ({"x", "dx", "vx"}, {"y", "dy", "vy"}, {"z", "dz", "vz"})
ANGULAR = ({"roll", "droll", "rx", "wx"}, {"pitch", "dpitch", "ry", "wy"}, {"yaw", "dyaw", "rz", "wz"})


def _axes(spec: ActionSpec, groups: tuple[set[str], ...]) -> list[int | None]:
    """For each of the three axes, the index of the action dimension that drives it (or None)."""
    return [next((i for i, name in enumerate(spec.names) if name in group), None) for group in groups]


def _vector(physical: np.ndarray, axes: list[int | None]) -> np.ndarray:
    return np.array([physical[i] if i is not None else 0.0 for i in axes])


def linear_axes(spec: ActionSpec) -> list[int | None]:
    """For x, y and z, the index of the action dimension that moves the end effector along it (or None)."""
    return _axes(spec, LINEAR)


def cartesian_names(spec: ActionSpec) -> list[str]:
    """The dimensions that are Cartesian axes (linear or angular), in ``names`` order."""
    axes = set().union(*LINEAR, *ANGULAR)
    return [name for name in spec.names if name in axes]


def twist(spec: ActionSpec, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(linear [3] m/s, angular [3] rad/s)."""
    physical = spec.physical(values)
    rate = physical / spec.period_s if spec.mode == MODE_DELTA else physical
    return _vector(rate, _axes(spec, LINEAR)), _vector(rate, _axes(spec, ANGULAR))


def quat_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """(x, y, z, w) of R = Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    return np.array(
        [
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy,
        ]
    )


def rpy_from_quat(quaternion: np.ndarray) -> np.ndarray:
    """Inverse of ``quat_from_rpy``: (roll, pitch, yaw) of an (x, y, z, w) quaternion."""
    x, y, z, w = quaternion / np.linalg.norm(quaternion)
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.array([roll, pitch, yaw])


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of (x, y, z, w) quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ]
    )


@dataclass(frozen=True)
class Pose:
    position: np.ndarray  # [3] metres
    orientation: np.ndarray  # [4] quaternion x, y, z, w


def pose_target(spec: ActionSpec, values: np.ndarray, current: Pose | None) -> Pose:
    physical = spec.physical(values)
    linear_axes, angular_axes = _axes(spec, LINEAR), _axes(spec, ANGULAR)
    linear, angular = _vector(physical, linear_axes), _vector(physical, angular_axes)
    if spec.mode == MODE_DELTA:
        if current is None:
            raise ValueError("a DELTA pose target needs the current end-effector pose")
        rotation = quat_from_rpy(*angular)
        orientation = quat_multiply(rotation, current.orientation)
        return Pose(current.position + linear, orientation / np.linalg.norm(orientation))
    # ABSOLUTE: dims that are not in the action keep the current value (or 0 / identity without one).
    position = current.position.copy() if current is not None else np.zeros(3)
    for axis, index in enumerate(linear_axes):
        if index is not None:
            position[axis] = physical[index]
    if any(i is not None for i in angular_axes):
        orientation = quat_from_rpy(*angular)
    else:
        orientation = current.orientation.copy() if current is not None else np.array([0.0, 0.0, 0.0, 1.0])
    return Pose(position, orientation)


def hold_outputs(spec: ActionSpec) -> frozenset[str]:
    """Which outputs carry a hold (safety.SafetyFilter.hold: zero motion, hold_last dims kept).

    A hold must stop the arm without commanding a place: rate outputs get zero motion (twist
    always; action and array in VELOCITY mode), pose gets the current pose as its target and
    trajectory the current joint positions (DELTA) or zero velocities (VELOCITY). Delta and
    absolute outputs get nothing: a delta of nothing, or no new target, leaves the arm where it is;
    and a per-action simulator (sim_bridge) is not stepped.
    """
    outputs = {"twist", "pose"}
    if spec.mode != MODE_ABSOLUTE:
        outputs.add("trajectory")
    if spec.mode == MODE_VELOCITY:
        outputs |= {"action", "array"}
    return frozenset(outputs)


def array(spec: ActionSpec, values: np.ndarray) -> np.ndarray:
    return spec.physical(values)


def joint_trajectory(
    spec: ActionSpec, values: np.ndarray, joint_order: tuple[str, ...], current: np.ndarray | None
) -> tuple[list[str], TrajectoryPoint]:
    """(joint_names, the one point) for a joint-space action. joint_names follow ``joint_order`` (the
    controller's), each value taken by name; ``current`` holds the joint positions in ``spec.names``
    order (needed for DELTA). Action names the controller does not have come last (refused at start)."""
    names = [name for name in joint_order if name in spec.names]
    names += [name for name in spec.names if name not in joint_order]
    index = [spec.names.index(name) for name in names]
    physical = spec.physical(values)
    if spec.mode == MODE_VELOCITY:
        return names, TrajectoryPoint(velocities=tuple(physical[index]), time_from_start_s=spec.period_s)
    if spec.mode == MODE_DELTA:
        if current is None:
            raise ValueError("a DELTA joint target needs the current joint positions")
        physical = current + physical
    return names, TrajectoryPoint(positions=tuple(physical[index]), time_from_start_s=spec.period_s)


__all__ = [
    "Pose",
    "array",
    "cartesian_names",
    "hold_outputs",
    "joint_trajectory",
    "linear_axes",
    "pose_target",
    "twist",
]
