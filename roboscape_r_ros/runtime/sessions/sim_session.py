"""One Meta-World episode after another, stepped one action at a time: the core of sim_bridge.

Time is simulated: every step (and every reset) advances the clock by one control period, so the
stamps of consecutive observations always differ and a ``/clock`` driven by it never goes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import mujoco
import numpy as np
import yaml

from roboscape_r_ros.config import from_dict
from roboscape_r_ros.contract.action_spec import ActionSpec, metaworld_action_spec
from roboscape_r_ros.contract.servo_command import ServoParams
from roboscape_r_ros.envs.metaworld_env import CONTROL_HZ, BlackFrameError, EnvConfig, PixelMetaWorldEnv
from roboscape_r_ros.envs.scene import SceneVariation, SceneVariationError
from roboscape_r_ros.parameters import parameter
from roboscape_r_ros.runtime import DEFAULT_TASK

_OBJECT = ("x", "y", "z", "qw", "qx", "qy", "qz")
_FRAME = ("hand_x", "hand_y", "hand_z", "gripper_opening") + tuple(f"obj{i}_{k}" for i in (0, 1) for k in _OBJECT)
# The 39-d Meta-World observation the scripted experts read: this frame's hand, gripper and two
# object poses (position + w,x,y,z quaternion, zeros when absent), the same 18 of the previous
# frame, then the goal position.
METAWORLD_OBS_NAMES: tuple[str, ...] = _FRAME + tuple(f"prev_{n}" for n in _FRAME) + ("goal_x", "goal_y", "goal_z")
assert len(METAWORLD_OBS_NAMES) == 39

PERIOD_NS = round(1e9 / CONTROL_HZ)  # 12.5 ms


@dataclass(frozen=True)
class SimBridgeParams:
    task: str = parameter(DEFAULT_TASK, "Meta-World v3 task, e.g. reach-v3, push-v3, pick-place-v3")
    camera: str = parameter(
        "corner2", "Meta-World camera: corner, corner2, corner3, corner4, topview, behindGripper, gripperPOV"
    )
    camera_resolution: int = parameter(128, "side of the square rgb8 frames on image_raw (pixels)", low=8, high=1024)
    seed: int = parameter(0, "seed of the first episode; episode k uses seed + k", low=0, high=2**31 - 1)
    max_steps: int = parameter(300, "control steps before an episode is truncated", low=1, high=1_000_000)
    end_on_success: bool = parameter(True, "an episode ends at its first success step (else only at max_steps)")
    auto_reset: bool = parameter(True, "start the next episode as soon as one ends (else refuse actions until reset)")
    republish_period_s: float = parameter(
        0.2,
        "publish the current frame again after this long without an action (s); keep it below the policy's "
        "stale_after_s",
        low=0.01,
        high=3600.0,
    )
    publish_clock: bool = parameter(True, "publish simulated time on /clock (for use_sim_time)")
    world_frame_id: str = parameter("world", "frame of state, ee_pose, joint_states and the commands")
    camera_frame_id: str = parameter("sim_camera", "frame_id of image_raw")
    warning_period_s: float = parameter(
        5.0, "at most one warning per kind of refused action in this period (s)", low=0.0, high=3600.0
    )
    scene: str = parameter(
        "",
        "scene variation, a YAML mapping of env.scene fields, e.g. {table_rgba: [0.2, 0.3, 0.8, 1], light_scale: "
        "0.5}; empty: the training scene. A change applies to colours, lights and the camera pose from the next "
        "frame on, mid-episode; to object and goal ranges from the next reset",
        read_only=False,
    )
    command_interface: Literal["action", "servo"] = parameter(
        "action",
        "action: one step per roboscape_r_ros/Action on `action`; servo: MoveIt Servo's contract, "
        "geometry_msgs/TwistStamped on `cmd_twist`, stepped at a fixed rate (contract/servo_command.py)",
    )
    servo: ServoParams = ServoParams()


def parse_scene(text: str) -> SceneVariation:
    """The ``scene`` parameter as a checked SceneVariation (SceneVariationError names the problem)."""
    try:
        values = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError:
        values = text
    if not isinstance(values, dict):
        raise SceneVariationError(f"scene must be a mapping of scene fields, e.g. {{light_scale: 0.5}}, got {text!r}")
    return from_dict(SceneVariation, values, prefix="scene.")


def arm_joints(model: mujoco.MjModel, hand: str = "hand") -> tuple[tuple[str, ...], np.ndarray]:
    """(names, qpos indices) of the joints of the robot that carries body ``hand``: every joint of its
    kinematic tree with one coordinate (hinge, slide: the Sawyer's right_j0..right_j6 and its two finger
    slides), none of the objects'."""
    root = model.body_rootid[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, hand)]
    joints = [
        j
        for j in range(model.njnt)
        if model.body_rootid[model.jnt_bodyid[j]] == root
        and model.jnt_type[j] in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)
    ]
    names = tuple(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joints)
    return names, np.array([model.jnt_qposadr[j] for j in joints], np.intp)


@dataclass(frozen=True)
class SimFrame:
    image: np.ndarray  # uint8 [H, W, 3] upright RGB
    metaworld_obs: np.ndarray  # float64 [39], METAWORLD_OBS_NAMES order
    hand_position: np.ndarray  # float64 [3] metres, world frame
    joint_positions: np.ndarray  # float64 [J] in SimSession.joint_names order (rad for hinges, m for slides)
    success: bool
    truncated: bool
    ended: bool  # success (when episodes end on success) or truncation: the next action is refused
    step: int  # control steps taken in this episode
    time_ns: int  # simulated time of this frame
    episode_id: str


class SimSession:
    def __init__(
        self,
        task: str,
        *,
        resolution: int = 128,
        camera: str = "corner2",
        seed: int = 0,
        max_steps: int = 300,
        end_on_success: bool = True,
        scene: SceneVariation | None = None,
    ) -> None:
        cfg = EnvConfig(
            tasks=[task], resolution=resolution, camera=camera, max_steps=max_steps, scene=scene or SceneVariation()
        )
        self.env = PixelMetaWorldEnv(task, cfg, seed=seed)
        self.joint_names, self._qpos_index = arm_joints(self.env.sim.model)
        self.task, self.seed = task, seed
        self.end_on_success = end_on_success
        self.spec: ActionSpec = metaworld_action_spec(1.0 / CONTROL_HZ)
        self.time_ns = 0
        self.episode_index = -1
        self.frame: SimFrame | None = None

    def reset(self) -> SimFrame:
        self.episode_index += 1
        seed = self.seed + self.episode_index
        obs, info = self.env.reset(seed=seed)
        self.time_ns += PERIOD_NS
        self.frame = self._frame(obs, info, success=False, truncated=False, step=0)
        return self.frame

    @property
    def episode_id(self) -> str:
        return f"{self.task}-seed{self.seed}-ep{self.episode_index:04d}"

    def step(self, values: np.ndarray) -> SimFrame:
        """One control step with already-validated values (see action_spec.check_command)."""
        if self.frame is None or self.frame.ended:
            raise RuntimeError("the episode has ended: reset first")
        obs, _, _, truncated, info = self.env.step(np.asarray(values, np.float32))
        self.time_ns += PERIOD_NS
        self.frame = self._frame(
            obs, info, success=bool(info["success"]), truncated=truncated, step=self.frame.step + 1
        )
        return self.frame

    def change_scene(self, scene: SceneVariation) -> None:
        """Show ``scene`` from the next frame on, in the middle of the episode (see PixelMetaWorldEnv.set_scene).

        A scene the camera cannot render (a frame of one colour) is refused and the old one is applied
        again (its camera jitter, if any, drawn anew).
        """
        old = self.env.scene
        self.env.set_scene(scene, now=True)
        try:
            self.env.render()
        except BlackFrameError as err:
            self.env.set_scene(old, now=True)
            raise SceneVariationError(f"scene refused, the camera would see nothing: {err}") from None

    def _frame(self, obs: dict, info: dict, *, success: bool, truncated: bool, step: int) -> SimFrame:
        metaworld_obs = np.asarray(info["metaworld_obs"], np.float64)
        return SimFrame(
            image=obs["image"],
            metaworld_obs=metaworld_obs,
            hand_position=metaworld_obs[:3].copy(),
            joint_positions=self.env.sim.data.qpos[self._qpos_index].copy(),
            success=success,
            truncated=truncated,
            ended=truncated or (success and self.end_on_success),
            step=step,
            time_ns=self.time_ns,
            episode_id=self.episode_id,
        )

    def close(self) -> None:
        self.env.close()
