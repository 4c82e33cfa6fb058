"""One Meta-World task as a gymnasium env with pixel observations and scene variations.

Observation: {"image": uint8 [H, W, 3] (upright), "state": float32 [4] (hand xyz in metres, gripper
opening in [0, 1])}. Action: float32 [4] in [-1, 1]: (dx, dy, dz) moves the hand's mocap target by
1 cm per unit per control step (Meta-World's action scale 1/100 m), gripper is the finger effort
(+1 closes, -1 opens). One control step is 5 physics steps of 2.5 ms (80 Hz). Reward is
Meta-World's hand-written dense reward; info["success"] is Meta-World's success flag.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from metaworld.sawyer_xyz_env import SawyerXYZEnv

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.envs.scene import SceneEditor, SceneVariation, SceneVariationError, reset_bounds
from roboscape_r_ros.envs.tasks import MT10_TASKS, check_task, instruction, sim_class
from roboscape_r_ros.errors import RoboscapeError

ACTION_NAMES = ["dx", "dy", "dz", "gripper"]
STATE_NAMES = ["hand_x", "hand_y", "hand_z", "gripper_opening"]
CONTROL_HZ = 80
MAX_RESET_DRAWS = 100


@dataclass
class EnvConfig:
    tasks: list[str] = option(list(MT10_TASKS), help="Meta-World v3 tasks (default: MT10)")
    resolution: int = option(64, help="side of the square frames in pixels (64, 96, 128, 256)", low=8)
    camera: str = option(
        "corner2", help="Meta-World camera: corner, corner2, corner3, corner4, topview, behindGripper, gripperPOV"
    )
    upright: bool = option(True, help="turn frames 180 degrees when the camera is upside-down (the corner cameras)")
    max_steps: int = option(300, help="control steps before an episode is truncated", low=1)
    scene: SceneVariation = option(SceneVariation(), help="scene variation applied at every reset")

    def __post_init__(self) -> None:
        for task in self.tasks:
            check_task(task)


class BlackFrameError(RoboscapeError, RuntimeError):
    """A rendered frame has a single colour (usually all black): the renderer lost its GL state."""


class RenderStartError(RoboscapeError, RuntimeError):
    """MuJoCo could not open an offscreen GL context with the chosen MUJOCO_GL backend."""


class UnknownCameraError(ConfigError):
    """A camera name the scene does not have."""


class _ResetVectorRejected(Exception):
    """Meta-World asked for a second reset vector: it rejected the first (object too near the goal)."""


class _ResetVectorFeed:
    """Gives Meta-World's reset our object/goal vector and detects when the task rejects it.

    Meta-World draws the vector in ``reset_model`` (which its reset calls twice) and draws again
    while the object is too near the goal; a fixed vector would make that loop spin forever, so
    a second request within one ``reset_model`` call raises ``_ResetVectorRejected``.
    """

    def __init__(self, sim: SawyerXYZEnv):
        self.vector: np.ndarray | None = None
        self._taken = False
        self._sim_reset_model = sim.reset_model
        # Patched on this instance (the point of the feed), which the type checker forbids for methods.
        sim.reset_model = self._reset_model  # type: ignore[method-assign]
        sim._get_state_rand_vec = self._take  # type: ignore[method-assign]

    def _reset_model(self) -> np.ndarray:
        self._taken = False
        return self._sim_reset_model()

    def _take(self) -> np.ndarray:
        if self._taken:
            raise _ResetVectorRejected
        self._taken = True
        assert self.vector is not None, "_reset_sim sets the vector before each reset"
        return self.vector


class FrameRenderer:
    """Offscreen frames of one camera, tuned for CPU speed: no MSAA, shadows or reflections."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, size: int, camera: str, upright: bool):
        cameras = [model.camera(i).name for i in range(model.ncam)]
        if camera not in cameras:
            raise UnknownCameraError(f"unknown camera {camera!r} (cameras: {', '.join(cameras)})")
        self.camera = camera
        # Must be set before the GL context exists; changing it later renders black frames.
        model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, size)
        # A Ctrl-C during the GL set-up (a node stopped while it starts) must not leave a half-built
        # renderer to the garbage collector: mujoco 3.3.0's __del__ reads attributes __init__ sets
        # late, and at exit EGL is torn down before the context is freed. Both end in tracebacks.
        self._renderer = mujoco.Renderer.__new__(mujoco.Renderer)
        self._renderer._gl_context = self._renderer._mjr_context = None
        # A backend that cannot start (glfw without a display) warns before it fails: the warnings
        # go into the one-line error instead of above it.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self._renderer.__init__(model, size, size)
            except BaseException as err:
                self._renderer.close()
                if not isinstance(err, Exception):
                    raise
                backend = os.environ.get("MUJOCO_GL", "glfw (the default)")
                causes = "; ".join(dict.fromkeys([str(w.message) for w in caught] + [str(err)]))
                raise RenderStartError(
                    f"MuJoCo cannot render offscreen with MUJOCO_GL={backend}: {causes} (headless machines need "
                    "MUJOCO_GL=egl with an EGL driver, or MUJOCO_GL=osmesa with libOSMesa)"
                ) from err
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        camera_up = data.cam(camera).xmat.reshape(3, 3)[:, 1]  # world direction of the image's up
        self.rotate_180 = upright and camera_up[2] < 0  # flipping rows alone would mirror the scene

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """uint8 [H, W, 3]."""
        self._renderer.update_scene(data, camera=self.camera)
        frame = self._renderer.render()
        if (frame == frame[0, 0]).all():
            raise BlackFrameError(
                f"camera {self.camera!r} rendered a frame of one colour {frame[0, 0].tolist()} "
                "(render settings changed after the GL context was created, or a scene without light)"
            )
        return np.ascontiguousarray(frame[::-1, ::-1]) if self.rotate_180 else frame

    def upload_textures(self, texture_ids: list[int]) -> None:
        # mujoco.Renderer has no public way to refresh a texture in its GL context (pinned mujoco 3.3.0).
        if not texture_ids:
            return
        self._renderer._gl_context.make_current()
        for texture in texture_ids:
            mujoco.mjr_uploadTexture(self._renderer.model, self._renderer._mjr_context, texture)

    def close(self) -> None:
        self._renderer.close()


class PixelMetaWorldEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}

    def __init__(self, task: str, cfg: EnvConfig, seed: int | None = None):
        self.task = task
        self.instruction = instruction(task)
        self.cfg = cfg
        self.render_mode = "rgb_array"
        self.sim = sim_class(task)()
        self.sim.max_path_length = cfg.max_steps
        self._reset_vector_feed = _ResetVectorFeed(self.sim)
        self.renderer = FrameRenderer(self.sim.model, self.sim.data, cfg.resolution, cfg.camera, cfg.upright)
        self.scene_editor = SceneEditor(self.sim.model, cfg.camera)
        self.set_scene(cfg.scene)
        self.np_random = np.random.default_rng(seed)
        self.steps = 0
        size = cfg.resolution
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
                "state": gym.spaces.Box(-np.inf, np.inf, (len(STATE_NAMES),), np.float32),
            }
        )
        self.action_space: gym.spaces.Box = gym.spaces.Box(-1.0, 1.0, (len(ACTION_NAMES),), np.float32)

    @property
    def reset_space(self) -> gym.spaces.Box:
        """The task's own object and goal reset ranges (Meta-World's ``_random_reset_space``)."""
        space = self.sim._random_reset_space
        assert space is not None, "every Meta-World v3 task sets its reset space"
        return space

    def set_scene(self, scene: SceneVariation, now: bool = False) -> None:
        """Use ``scene`` from the next reset on; with ``now``, also show its colours, lights and camera
        pose from the next rendered frame (mid-episode: the arm and objects stay where they are; object
        and goal ranges still wait for the next reset)."""
        scene.validate()
        self._reset_low, self._reset_high = reset_bounds(scene, self.reset_space.low, self.reset_space.high, self.task)
        self.scene = scene
        if now:
            self._apply_scene(self.np_random)

    def _apply_scene(self, camera_rng: np.random.Generator) -> None:
        self.renderer.upload_textures(self.scene_editor.apply(self.scene, camera_rng))
        mujoco.mj_forward(self.sim.model, self.sim.data)  # camera poses follow the edited model

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        positions_rng, camera_rng = self.np_random.spawn(2)  # independent: a camera jitter leaves positions alone
        self._apply_scene(camera_rng)
        sim_obs = self._reset_sim(positions_rng)
        mujoco.mj_forward(self.sim.model, self.sim.data)
        self.steps = 0
        return self._observation(sim_obs), self._info(sim_obs, success=False)

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (len(ACTION_NAMES),) or not np.isfinite(action).all():
            raise ValueError(f"action must be 4 finite numbers (dx, dy, dz, gripper), got {action!r}")
        sim_obs, reward, _, _, sim_info = self.sim.step(np.clip(action, -1.0, 1.0))
        self.steps += 1
        truncated = self.steps >= self.cfg.max_steps
        info = self._info(sim_obs, success=bool(sim_info["success"]))
        return self._observation(sim_obs), float(reward), False, truncated, info

    def render(self) -> np.ndarray:
        return self.renderer.render(self.sim.data)

    def close(self) -> None:
        self.renderer.close()
        self.sim.close()

    def _reset_sim(self, rng: np.random.Generator) -> np.ndarray:
        for _ in range(MAX_RESET_DRAWS):
            self._reset_vector_feed.vector = rng.uniform(self._reset_low, self._reset_high)
            try:
                sim_obs, _ = self.sim.reset()
                return sim_obs
            except _ResetVectorRejected:
                continue
        raise SceneVariationError(
            f"{self.task}: {MAX_RESET_DRAWS} draws from object_range/goal_range all put the object closer "
            "to the goal than the task allows; move the ranges apart"
        )

    def _observation(self, sim_obs: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": self.render(), "state": sim_obs[: len(STATE_NAMES)].astype(np.float32)}

    def _info(self, sim_obs: np.ndarray, success: bool) -> dict[str, Any]:
        # metaworld_obs (39-d: hand, gripper, object poses, previous frame, goal) is what the scripted
        # experts read; it is privileged information, never a policy input.
        return {"task": self.task, "instruction": self.instruction, "success": success, "metaworld_obs": sim_obs}


def make_env(task: str, cfg: EnvConfig | None = None, seed: int | None = None) -> PixelMetaWorldEnv:
    return PixelMetaWorldEnv(task, cfg or EnvConfig(), seed)
