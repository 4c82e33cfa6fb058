"""Scene variations for out-of-domain tests: colours, lighting, camera pose, object and goal ranges;
random scenes per episode for diverse training data.

A ``SceneVariation`` holds plain values only (every field neutral by default). ``SceneEditor``
applies one to a MuJoCo model and undoes it from a copy of the original values, so a variation
can be changed or re-drawn per episode. Model edits persist across Meta-World resets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import mujoco
import numpy as np

from roboscape_r_ros.config import ConfigError, option

RGB = tuple[float, float, float]
RGBA = tuple[float, float, float, float]
XYZ = tuple[float, float, float]
XYZRange = tuple[XYZ, XYZ]  # (low xyz, high xyz), metres, world frame

TABLE_MATERIAL = "table_wood"
FLOOR_GEOM = "floor"
VISIBLE_GEOM_GROUPS = (0, 1, 2)  # the groups MuJoCo renders by default


class SceneVariationError(ConfigError):
    """A scene variation value that cannot be applied; the message names the field and value."""


@dataclass
class SceneVariation:
    table_rgba: RGBA | None = option(
        None, help="flat colour of the table (top and legs), RGBA in [0,1]; none keeps the wood texture"
    )
    object_rgba: RGBA | None = option(
        None, help="flat colour of the manipulated object(s): visible geoms of every body that moves on its own joint"
    )
    background_rgb: RGB | None = option(None, help="flat colour of the floor and the sky, RGB in [0,1]")
    light_scale: float = option(1.0, help="factor on the diffuse colour of the scene's lights")
    headlight_ambient: RGB | None = option(None, help="ambient colour of the camera headlight, RGB in [0,1]")
    headlight_diffuse: RGB | None = option(None, help="diffuse colour of the camera headlight, RGB in [0,1]")
    camera_position_jitter: float = option(0.0, help="camera offset per axis, uniform in +-this, metres, per episode")
    camera_rotation_jitter: float = option(0.0, help="camera turn per axis, uniform in +-this, degrees, per episode")
    object_range: XYZRange | None = option(
        None, help="[[x,y,z] low, [x,y,z] high] where the object starts, metres; none keeps the task's range"
    )
    goal_range: XYZRange | None = option(
        None, help="[[x,y,z] low, [x,y,z] high] where the goal is, metres; none keeps the task's range"
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("table_rgba", "object_rgba"):
            _check_colour(name, getattr(self, name), 4)
        for name in ("background_rgb", "headlight_ambient", "headlight_diffuse"):
            _check_colour(name, getattr(self, name), 3)
        for name in ("light_scale", "camera_position_jitter", "camera_rotation_jitter"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                raise SceneVariationError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("object_range", "goal_range"):
            _check_range(name, getattr(self, name))


@dataclass
class SceneDraws:
    """A random scene per episode for training data (domain randomisation, Tobin et al. 2017).

    With ``colour_share`` > 0, that share of episodes paints the table, the floor and sky, and the
    object flat colours drawn uniformly from RGB [0.1, 0.9]; a colour closer than ``avoid_distance``
    to any of ``avoid_rgb`` (the evaluation scenes' colours) is drawn again, so training scenes stay
    apart from the scenes that judge the policy. Every episode's light factor is drawn from
    ``light_scale``.
    """

    colour_share: float = option(
        0.0, help="share of episodes with random flat table, floor and object colours", low=0.0, high=1.0
    )
    light_scale: tuple[float, float] = option((1.0, 1.0), help="[low, high] of the light factor drawn per episode")
    avoid_rgb: list[RGB] = option([], help="colours no draw may come near (the evaluation scenes'), RGB in [0,1]")
    avoid_distance: float = option(0.25, help="smallest Euclidean RGB distance of a drawn colour to avoid_rgb", low=0.0)

    def __post_init__(self) -> None:
        low, high = self.light_scale
        if not 0.0 <= low <= high:
            raise SceneVariationError(f"light_scale must be [low, high], 0 <= low <= high, got {self.light_scale!r}")
        for colour in self.avoid_rgb:
            _check_colour("avoid_rgb", colour, 3)

    @property
    def active(self) -> bool:
        return self.colour_share > 0 or self.light_scale != (1.0, 1.0)

    def draw(self, base: SceneVariation, rng: np.random.Generator) -> SceneVariation:
        """``base`` with this episode's colours and light factor."""
        light = float(rng.uniform(*self.light_scale)) * base.light_scale
        if rng.random() >= self.colour_share:
            return replace(base, light_scale=light)
        table, floor, thing = (self._colour(rng) for _ in range(3))
        return replace(
            base, light_scale=light, table_rgba=(*table, 1.0), background_rgb=floor, object_rgba=(*thing, 1.0)
        )

    def _colour(self, rng: np.random.Generator) -> RGB:
        avoid = np.asarray(self.avoid_rgb, dtype=float).reshape(-1, 3)
        for _ in range(1000):
            rgb = rng.uniform(0.1, 0.9, 3)
            if not avoid.size or np.linalg.norm(avoid - rgb, axis=1).min() >= self.avoid_distance:
                return (float(rgb[0]), float(rgb[1]), float(rgb[2]))
        raise SceneVariationError(f"no colour in RGB [0.1, 0.9] keeps {self.avoid_distance} from avoid_rgb")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_colour(name: str, value: Sequence[float] | None, size: int) -> None:
    if value is None:
        return
    channels = "r, g, b, a" if size == 4 else "r, g, b"
    if (
        not isinstance(value, (tuple, list, np.ndarray))
        or len(value) != size
        or not all(_is_number(v) and 0.0 <= v <= 1.0 for v in value)
    ):
        raise SceneVariationError(f"{name} must be {size} numbers in [0, 1] ({channels}), got {value!r}")


def _check_range(name: str, value: XYZRange | None) -> None:
    if value is None:
        return

    def is_xyz(xyz: object) -> bool:
        return isinstance(xyz, (tuple, list, np.ndarray)) and len(xyz) == 3 and all(map(_is_number, xyz))

    shape_ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(map(is_xyz, value))
    if not shape_ok or not np.isfinite(np.asarray(value, dtype=float)).all():
        raise SceneVariationError(f"{name} must be [[x, y, z] low, [x, y, z] high] with finite metres, got {value!r}")
    low, high = np.asarray(value, dtype=float)
    for axis, lo, hi in zip("xyz", low, high):
        if lo > hi:
            raise SceneVariationError(f"{name} low {tuple(low)} exceeds high {tuple(high)} on {axis}")


def reset_bounds(
    variation: SceneVariation, low: np.ndarray, high: np.ndarray, task: str
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of Meta-World's reset vector under ``variation``.

    The vector is the object's xyz, followed by the goal's xyz for tasks that draw a goal (6 values);
    fixture tasks (doors, drawers, buttons, windows: 3 values) place the goal relative to the object.
    """
    low, high = low.astype(np.float64), high.astype(np.float64)
    if variation.object_range is not None:
        low[:3], high[:3] = variation.object_range
    if variation.goal_range is not None:
        if low.size != 6:
            raise SceneVariationError(
                f"goal_range cannot be set for {task}: its goal is placed relative to the object (set object_range)"
            )
        low[3:], high[3:] = variation.goal_range
    return low, high


def movable_object_geoms(model: mujoco.MjModel) -> np.ndarray:
    """Visible geoms of the bodies that move on their own joint (and their children), the arm excluded.

    In Meta-World that is the manipulated thing: the puck, the peg, the door, the drawer, the button...
    """
    robot_root = model.body_rootid[model.joint("right_j0").bodyid[0]]
    movers = {int(b) for b in model.jnt_bodyid if model.body_rootid[b] != robot_root}

    def moves(body: int) -> bool:
        while body != 0:
            if body in movers:
                return True
            body = model.body_parentid[body]
        return False

    def alpha(geom: int) -> float:
        material = model.geom_matid[geom]
        return model.mat_rgba[material, 3] if material >= 0 else model.geom_rgba[geom, 3]

    # collision geoms are hidden (group 3, or fully transparent) and must stay so
    return np.array(
        [
            g
            for g in range(model.ngeom)
            if moves(model.geom_bodyid[g]) and model.geom_group[g] in VISIBLE_GEOM_GROUPS and alpha(g) > 0
        ],
        dtype=np.int64,
    )


@dataclass
class _ModelValues:
    """The model arrays a variation edits, copied so they can be written back."""

    mat_rgba: np.ndarray
    mat_texid: np.ndarray
    geom_rgba: np.ndarray
    geom_matid: np.ndarray
    light_diffuse: np.ndarray
    headlight_ambient: np.ndarray
    headlight_diffuse: np.ndarray
    cam_pos: np.ndarray
    cam_quat: np.ndarray
    sky_pixels: np.ndarray

    @classmethod
    def copy_from(cls, m: mujoco.MjModel, sky_pixels: np.ndarray) -> _ModelValues:
        return cls(
            mat_rgba=m.mat_rgba.copy(),
            mat_texid=m.mat_texid.copy(),
            geom_rgba=m.geom_rgba.copy(),
            geom_matid=m.geom_matid.copy(),
            light_diffuse=m.light_diffuse.copy(),
            headlight_ambient=m.vis.headlight.ambient.copy(),
            headlight_diffuse=m.vis.headlight.diffuse.copy(),
            cam_pos=m.cam_pos.copy(),
            cam_quat=m.cam_quat.copy(),
            sky_pixels=sky_pixels.copy(),
        )


class SceneEditor:
    """Applies a ``SceneVariation`` to one model and restores the original values."""

    def __init__(self, model: mujoco.MjModel, camera: str):
        self.model = model
        self.camera_id = model.camera(camera).id
        self.table_material = model.material(TABLE_MATERIAL).id
        self.floor_material = model.geom(FLOOR_GEOM).matid[0]
        skyboxes = np.flatnonzero(model.tex_type == mujoco.mjtTexture.mjTEXTURE_SKYBOX)
        self.sky_texture = int(skyboxes[0]) if skyboxes.size else None
        self.object_geoms = movable_object_geoms(model)
        self._original = _ModelValues.copy_from(model, self.sky_pixels())

    def sky_pixels(self) -> np.ndarray:
        """A writable view of the skybox texels, [n, channels] uint8 (empty when there is no skybox)."""
        if self.sky_texture is None:
            return np.zeros((0, 3), dtype=np.uint8)
        t = self.sky_texture
        channels = self.model.tex_nchannel[t]
        size = self.model.tex_width[t] * self.model.tex_height[t] * channels
        start = self.model.tex_adr[t]
        return self.model.tex_data[start : start + size].reshape(-1, channels)

    def restore(self) -> None:
        m, original = self.model, self._original
        m.mat_rgba[:] = original.mat_rgba
        m.mat_texid[:] = original.mat_texid
        m.geom_rgba[:] = original.geom_rgba
        m.geom_matid[:] = original.geom_matid
        m.light_diffuse[:] = original.light_diffuse
        m.vis.headlight.ambient[:] = original.headlight_ambient
        m.vis.headlight.diffuse[:] = original.headlight_diffuse
        m.cam_pos[:] = original.cam_pos
        m.cam_quat[:] = original.cam_quat
        self.sky_pixels()[:] = original.sky_pixels

    def apply(self, variation: SceneVariation, rng: np.random.Generator) -> list[int]:
        """Restore, then apply ``variation`` (camera jitter drawn from ``rng``).

        Returns the ids of textures whose pixels are now different from what they were before
        this call: a renderer must upload them again to show the change.
        """
        sky_before = self.sky_pixels().copy()
        self.restore()
        m = self.model
        if variation.table_rgba is not None:
            self._flat_material(self.table_material, variation.table_rgba)
        if variation.background_rgb is not None:
            self._flat_material(self.floor_material, (*variation.background_rgb, 1.0))
            if self.sky_texture is not None:
                self.sky_pixels()[:, :3] = np.round(np.asarray(variation.background_rgb) * 255).astype(np.uint8)
        if variation.object_rgba is not None:
            if self.object_geoms.size == 0:
                raise SceneVariationError("object_rgba cannot be applied: this scene has no movable object")
            m.geom_matid[self.object_geoms] = -1
            m.geom_rgba[self.object_geoms] = variation.object_rgba
        m.light_diffuse[:] *= variation.light_scale
        if variation.headlight_ambient is not None:
            m.vis.headlight.ambient[:] = variation.headlight_ambient
        if variation.headlight_diffuse is not None:
            m.vis.headlight.diffuse[:] = variation.headlight_diffuse
        self._jitter_camera(variation, rng)
        if self.sky_texture is None or np.array_equal(sky_before, self.sky_pixels()):
            return []  # (no skybox: nothing to upload)
        return [self.sky_texture]

    def _flat_material(self, material: int, rgba: Sequence[float]) -> None:
        self.model.mat_texid[material] = -1  # no texture: the material's colour is drawn as is
        self.model.mat_rgba[material] = rgba

    def _jitter_camera(self, variation: SceneVariation, rng: np.random.Generator) -> None:
        shift = rng.uniform(-1.0, 1.0, 3) * variation.camera_position_jitter
        # a rotation vector (axis * angle) in the camera's frame
        rotation = np.radians(rng.uniform(-1.0, 1.0, 3) * variation.camera_rotation_jitter)
        cam = self.camera_id
        self.model.cam_pos[cam] += shift
        angle = float(np.linalg.norm(rotation))
        if angle > 0:
            turn = np.empty(4)
            mujoco.mju_axisAngle2Quat(turn, rotation / angle, angle)
            quat = np.empty(4)
            mujoco.mju_mulQuat(quat, self.model.cam_quat[cam].astype(np.float64), turn)
            self.model.cam_quat[cam] = quat
