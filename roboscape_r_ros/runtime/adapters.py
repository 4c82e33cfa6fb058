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
    trajectory  one point, joint_names = the action names (or the names given):
                ABSOLUTE -> positions = value * scale; DELTA -> velocities = value * scale / period;
                VELOCITY -> velocities = value * scale; time_from_start = one period.

A hold (watchdog, e-stop) goes only to the outputs in ``hold_outputs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roboscape_r_ros.runtime.action_spec import MODE_ABSOLUTE, MODE_DELTA, MODE_VELOCITY, ActionSpec

LINEAR = ({"x", "dx", "vx"}, {"y", "dy", "vy"}, {"z", "dz", "vz"})
ANGULAR = ({"roll", "droll", "rx", "wx"}, {"pitch", "dpitch", "ry", "wy"}, {"yaw", "dyaw", "rz", "wz"})


def _axes(spec: ActionSpec, groups: tuple[set[str], ...]) -> list[int | None]:
    """For each of the three axes, the index of the action dimension that drives it (or None)."""
    return [next((i for i, name in enumerate(spec.names) if name in group), None) for group in groups]


def _vector(physical: np.ndarray, axes: list[int | None]) -> np.ndarray:
    return np.array([physical[i] if i is not None else 0.0 for i in axes])


def supported(spec: ActionSpec, output: str) -> str | None:
    """None when ``output`` can express actions of this spec, else why not."""
    has_linear = any(i is not None for i in _axes(spec, LINEAR))
    has_angular = any(i is not None for i in _axes(spec, ANGULAR))
    if output == "twist":
        if spec.mode == MODE_ABSOLUTE:
            return "a twist cannot carry absolute targets"
        if not (has_linear or has_angular):
            return f"no dimension of {list(spec.names)} is a linear or angular axis"
    if output == "pose":
        if spec.mode == MODE_VELOCITY:
            return "a pose target cannot carry velocities"
        if not (has_linear or has_angular):
            return f"no dimension of {list(spec.names)} is a position or orientation axis"
    return None


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
    always; trajectory unless ABSOLUTE; action and array in VELOCITY mode), pose gets the current
    pose as its target. Delta and absolute outputs get nothing: a delta of nothing, or no new
    target, leaves the arm where it is; and a per-action simulator (sim_bridge) is not stepped.
    """
    outputs = {"twist", "pose"}
    if spec.mode != MODE_ABSOLUTE:
        outputs.add("trajectory")
    if spec.mode == MODE_VELOCITY:
        outputs |= {"action", "array"}
    return frozenset(outputs)


def array(spec: ActionSpec, values: np.ndarray) -> np.ndarray:
    return spec.physical(values)


def trajectory_point(spec: ActionSpec, values: np.ndarray) -> dict[str, list[float]]:
    physical = spec.physical(values)
    if spec.mode == MODE_ABSOLUTE:
        return {"positions": physical.tolist(), "velocities": []}
    rate = physical / spec.period_s if spec.mode == MODE_DELTA else physical
    return {"positions": [], "velocities": rate.tolist()}


__all__ = ["Pose", "array", "hold_outputs", "pose_target", "supported", "trajectory_point", "twist"]
