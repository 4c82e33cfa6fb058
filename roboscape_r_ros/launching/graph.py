"""The one description of the roboscape_r_ros node graph (no rclpy, no launch imports).

Modes: which process provides the observations and executes the actions.

    imagination  the dreamer (world model) is the environment: it consumes ``action`` and publishes
                 ``observation`` and ``done``; reward_publisher turns frames into ``reward``
    sim          sim_bridge (Meta-World) consumes ``action`` and publishes ``image_raw``, which
                 camera_ingest turns into ``observation``; simulated time on /clock
    real         a real camera's topic is remapped onto ``image_raw`` and ``action`` (or one of the
                 adapter outputs ``cmd_*``) onto the arm controller's command topic

policy_controller is the same node with the same parameters in every mode: switching is remapping.
Every topic is relative, inside the graph's namespace (default ``/roboscape``); the *topic
arguments* below are the only names a user remaps, and every node using that topic gets the same
remapping, so producer and consumer can never disagree.

The e-stop: policy_controller sends nothing until it has heard a value on ``estop`` (a restarted one
cannot move before it knows the e-stop's state). In the sim and imagination graphs the simulated arm
has one: sim_bridge and the dreamer (imagine) publish ``estop`` false once, latched. They are not in
the ``estop`` argument's remapping: ``estop:=/lab/estop`` names a real e-stop, and the controller then
waits for that one alone. The real graph has none: the arm's e-stop (latched or periodic) is remapped
onto ``estop``, and until a value arrives the controller warns once and sends nothing.

World-model nodes: in imagination the dreamer is the environment (it consumes ``action`` and
publishes ``observation``, ``done`` and ``episode``) and reward_publisher pairs each dreamed frame with
the dreamer's ``done`` by stamp; both load the run named by the ``world_model`` argument. The
dreamer's shadow mode (a monitor beside a real arm: ``dream/prediction``, ``dream/error``) is not in
the real graph by default, since it needs a world model: run ``ros2 run roboscape_r_ros dreamer
--ros-args -p mode:=shadow -p world_model:=<run>`` in the graph's namespace beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from roboscape_r_ros.runtime import DEFAULT_TASK

PACKAGE = "roboscape_r_ros"
MODES = ("imagination", "sim", "real")
DEFAULT_NAMESPACE = "roboscape"
LARGE_DATA = "LARGE_DATA"  # FASTDDS_BUILTIN_TRANSPORTS for images over ~64 KB (default transports lose most)
RESPAWN_DELAY_S = 2.0


@dataclass(frozen=True)
class TopicArgument:
    """A launch argument that remaps one node-relative topic in every node that uses it."""

    name: str
    topic: str
    description: str

    @property
    def default(self) -> str:
        return self.topic


@dataclass(frozen=True)
class ParameterArgument:
    """A launch argument that sets one parameter of the listed nodes."""

    name: str
    parameter: str
    nodes: tuple[str, ...]
    default: str
    description: str


TOPIC_ARGUMENTS: tuple[TopicArgument, ...] = (
    TopicArgument("camera", "image_raw", "camera image topic (sensor_msgs/Image): sim_bridge's camera or a real one"),
    TopicArgument(
        "command", "action", "roboscape_r_ros/Action command topic: sim_bridge, the dreamer or an arm driver consume it"
    ),
    TopicArgument(
        "state",
        "state",
        "robot state (sensor_msgs/JointState) for backends that read it (the expert reads sim_bridge's)",
    ),
    TopicArgument(
        "ee_pose", "ee_pose", "current end-effector pose (geometry_msgs/PoseStamped), for the cmd_pose adapter"
    ),
    TopicArgument("estop", "estop", "e-stop (std_msgs/Bool): true holds the arm until false"),
    TopicArgument(
        "episode_reset",
        "reset",
        "service (std_srvs/Trigger) that starts a new episode: sim_bridge's; policy_controller calls it when an "
        "out-of-domain hold times out",
    ),
    TopicArgument("goal", "goal_image", "goal frame (sensor_msgs/Image, transient local)"),
    TopicArgument("pose_command", "cmd_pose", "geometry_msgs/PoseStamped target for a Cartesian pose controller"),
    TopicArgument("twist_command", "cmd_twist", "geometry_msgs/TwistStamped for a velocity/servo controller"),
    TopicArgument("array_command", "cmd_array", "std_msgs/Float64MultiArray for a forward command controller"),
    TopicArgument(
        "trajectory_command", "cmd_trajectory", "trajectory_msgs/JointTrajectory for a trajectory controller"
    ),
)

PARAMETER_ARGUMENTS: tuple[ParameterArgument, ...] = (
    ParameterArgument(
        "backend",
        "backend",
        ("policy_controller",),
        "random",
        "policy backend of policy_controller: expert, random, or a learned one",
    ),
    ParameterArgument(
        "task",
        "task",
        ("sim_bridge", "policy_controller"),
        DEFAULT_TASK,
        "Meta-World task of sim_bridge and of the expert backend",
    ),
    ParameterArgument(
        "world_model",
        "world_model",
        ("dreamer", "reward_publisher"),
        "",
        "world-model run folder (world_model.safetensors + split.json) or .safetensors of the dreamer and "
        "reward_publisher",
    ),
)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str  # as in executables.txt and lib/roboscape_r_ros/ (ros2 run)
    modes: tuple[str, ...]
    topics: tuple[str, ...]  # node-relative topics it publishes or subscribes, services it serves or calls
    role: str
    clock_source: bool = False  # publishes /clock itself, so never follows use_sim_time
    mode_parameters: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    # When the process exits while the graph runs: "respawn" it after RESPAWN_DELAY_S (nodes whose
    # restart loses nothing but the frame in flight), or "shutdown" the whole graph (the node that
    # commands the arm, and the sim whose restart would send /clock back to zero).
    on_exit: Literal["respawn", "shutdown"] = "shutdown"

    @property
    def entry_point(self) -> str:
        """ "module:function" of the executable: every node is ``roboscape_r_ros.nodes.entry:<executable>``,
        the line executables.txt gives it (a test checks they agree); it runs ``module``'s main."""
        return f"{PACKAGE}.nodes.entry:{self.executable}"

    @property
    def module(self) -> str:
        return f"{PACKAGE}.nodes.{self.executable}"

    @property
    def params_file(self) -> str:
        return f"{self.name}.yaml"

    def remappings(self) -> list[tuple[str, str]]:
        """(topic, argument name) for every topic argument this node uses."""
        return [(arg.topic, arg.name) for arg in TOPIC_ARGUMENTS if arg.topic in self.topics]

    def parameter_arguments(self) -> list[ParameterArgument]:
        return [arg for arg in PARAMETER_ARGUMENTS if self.name in arg.nodes]


NODES: tuple[NodeSpec, ...] = (
    NodeSpec(
        name="sim_bridge",
        executable="sim_bridge",
        modes=("sim",),
        topics=("action", "cmd_twist", "image_raw", "state", "ee_pose", "success", "episode", "reset"),
        role="Meta-World as the arm and camera (stand-in for Gazebo); one step per action or Servo twists; /clock",
        clock_source=True,
    ),
    NodeSpec(
        name="camera_ingest",
        executable="camera_ingest",
        modes=("sim", "real"),
        # action, episode, success, state, ee_pose: read only when recording (record.*)
        topics=("image_raw", "observation", "action", "episode", "success", "state", "ee_pose"),
        role="camera frames of any common encoding -> rgb8 observation at model size",
        on_exit="respawn",
    ),
    NodeSpec(
        name="policy_controller",
        executable="policy_controller",
        modes=("imagination", "sim", "real"),
        topics=(
            "observation",
            "goal_image",
            "state",
            "ee_pose",
            "estop",
            "episode",
            "reset",
            "action",
            "cmd_pose",
            "cmd_twist",
            "cmd_array",
            "cmd_trajectory",
        ),
        role="policy inference with safety limits -> Action + arm-controller adapters",
    ),
    NodeSpec(
        name="dreamer",
        executable="dreamer",
        modes=("imagination",),
        topics=(
            "action",
            "observation",
            "done",
            "episode",
            "goal_image",
            "dream/image",
            "dream/prediction",
            "dream/error",
        ),
        role="the world model as the environment (imagine) or as a monitor (shadow)",
        mode_parameters={"imagination": {"mode": "imagine"}},
        on_exit="respawn",
    ),
    NodeSpec(
        name="reward_publisher",
        executable="reward_publisher",
        modes=("imagination",),
        # reward/marker: a visualization_msgs/Marker (TEXT_VIEW_FACING) with the reward terms, the
        # Reward display of config/roboscape.rviz (RViz has no scalar plot; rqt_plot/PlotJuggler
        # read reward/reward directly).
        topics=("observation", "goal_image", "instruction", "done", "episode", "reward", "reward/marker"),
        role="endogenous reward (1 - D(frame, goal) + done bonus) on dreamed or real frames",
        mode_parameters={"imagination": {"done_source": "topic"}},
        on_exit="respawn",
    ),
)


class GraphError(ValueError):
    """An unknown mode, node or argument."""


def node(name: str) -> NodeSpec:
    for spec in NODES:
        if spec.name == name:
            return spec
    raise GraphError(f"unknown node '{name}' (nodes: {', '.join(n.name for n in NODES)})")


def nodes_for(mode: str) -> list[NodeSpec]:
    if mode not in MODES:
        raise GraphError(f"unknown mode '{mode}' (modes: {', '.join(MODES)})")
    return [n for n in NODES if mode in n.modes]


def use_sim_time(spec: NodeSpec, mode: str) -> bool:
    """Nodes follow sim_bridge's /clock in sim mode (the clock source itself does not)."""
    return mode == "sim" and not spec.clock_source


def inline_parameters(spec: NodeSpec, mode: str) -> dict[str, object]:
    """Parameters the graph sets on top of the node's YAML in this mode (argument-driven ones apart)."""
    return {"use_sim_time": use_sim_time(spec, mode), **dict(spec.mode_parameters.get(mode, {}))}


def arguments() -> list[tuple[str, str, str]]:
    """(name, default, description) of every launch argument but the launch-file-only ones."""
    return [(a.name, a.default, a.description) for a in TOPIC_ARGUMENTS] + [
        (a.name, a.default, a.description) for a in PARAMETER_ARGUMENTS
    ]


def argument_defaults() -> dict[str, str]:
    return {name: default for name, default, _ in arguments()}


def source_config_dir() -> Path | None:
    """config/ of a source checkout (editable installs), if this module runs from one."""
    path = Path(__file__).resolve().parents[2] / "config"
    return path if (path / "policy_controller.yaml").is_file() else None


def config_dir() -> Path:
    """Where the parameter files are: the checkout's config/, else the package's share folder."""
    source = source_config_dir()
    if source is not None:
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError as err:  # pragma: no cover - only without any ROS install
        raise GraphError("cannot find config/: no source checkout and ament_index_python is missing") from err
    return Path(get_package_share_directory(PACKAGE)) / "config"
