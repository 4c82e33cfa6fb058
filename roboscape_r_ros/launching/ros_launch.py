"""The graph spec as `ros2 launch` descriptions (imported only by the launch files).

    train.launch.py   imagination: the policy learns inside the world model
    deploy.launch.py  target:=sim (sim_bridge) or target:=real (your camera and arm, by remapping)

Every node, parameter file and remapping comes from ``graph.py``; this module only translates.
``launch`` and ``launch_ros`` are imported inside the functions, so importing this module needs
neither (the core stays importable without ROS).
"""

from __future__ import annotations

from typing import Any

from roboscape_r_ros.launching import graph

TARGET = "target"


def _common_arguments(share_config: str) -> list:
    from launch.actions import DeclareLaunchArgument
    from launch.substitutions import EnvironmentVariable

    declared = [
        DeclareLaunchArgument(
            "namespace",
            default_value=graph.DEFAULT_NAMESPACE,
            description="namespace of every node and topic of the graph",
        ),
        DeclareLaunchArgument(
            "config_dir",
            default_value=share_config,
            description="folder holding <node>.yaml parameter files (copy and edit the package's)",
        ),
        # Large images are mostly lost with Fast DDS's default transports (140+ of 150 640x480 frames): LARGE_DATA
        # unless the environment already chose (e.g. UDPv4 when mixing distros on one host).
        DeclareLaunchArgument(
            "fastdds_transports",
            default_value=EnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", default_value=graph.LARGE_DATA),
            description="FASTDDS_BUILTIN_TRANSPORTS for every node (LARGE_DATA for camera images)",
        ),
    ]
    for name, default, description in graph.arguments():
        declared.append(DeclareLaunchArgument(name, default_value=default, description=description))
    return declared


def _node(spec: graph.NodeSpec, mode: str, condition=None):
    from launch.actions import Shutdown
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.actions import Node

    parameters: dict[str, object] = dict(graph.inline_parameters(spec, mode))
    for arg in spec.parameter_arguments():
        parameters[arg.parameter] = LaunchConfiguration(arg.name)
    on_exit: dict[str, Any]  # Node's keyword arguments for the node's end
    if spec.on_exit == "respawn":
        on_exit = {"respawn": True, "respawn_delay": graph.RESPAWN_DELAY_S}
    else:
        on_exit = {"on_exit": [Shutdown(reason=f"{spec.name} exited")]}
    return Node(
        package=graph.PACKAGE,
        executable=spec.executable,
        name=spec.name,
        namespace=LaunchConfiguration("namespace"),
        parameters=[PathJoinSubstitution([LaunchConfiguration("config_dir"), spec.params_file]), parameters],
        remappings=[(topic, LaunchConfiguration(arg)) for topic, arg in spec.remappings()],
        condition=condition,
        output="screen",
        **on_exit,
    )


def launch_description(modes: tuple[str, ...]):
    """One Node action per (mode, node); with several modes a ``target`` argument picks one."""
    import os

    from ament_index_python.packages import get_package_share_directory

    # mypy, run from the repository root, takes `launch` for its launch/ folder (a namespace package)
    from launch import LaunchDescription  # type: ignore[attr-defined]
    from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration, PythonExpression

    share_config = os.path.join(get_package_share_directory(graph.PACKAGE), "config")
    actions: list = _common_arguments(share_config)
    if len(modes) > 1:
        actions.insert(
            0,
            DeclareLaunchArgument(
                TARGET,
                default_value=modes[0],
                choices=list(modes),
                description=f"what the policy drives: {', '.join(modes)}",
            ),
        )
    actions.append(SetEnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", LaunchConfiguration("fastdds_transports")))
    for mode in modes:
        condition = (
            IfCondition(PythonExpression(["'", LaunchConfiguration(TARGET), f"' == '{mode}'"]))
            if len(modes) > 1
            else None
        )
        for spec in graph.nodes_for(mode):
            actions.append(_node(spec, mode, condition))
    return LaunchDescription(actions)
