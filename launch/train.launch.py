"""Imagination training: the policy acts inside the learned world model (no robot, no simulator).

    ros2 launch roboscape_r_ros train.launch.py [namespace:=roboscape] [backend:=...] [config_dir:=...]

Nodes: dreamer (the world model as the environment), reward_publisher (endogenous reward) and
policy_controller. The node list, parameter files and remappings come from
roboscape_r_ros/launching/graph.py, the same spec `roboscape-r launch mode=imagination` runs.
Sets FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA unless the environment chose otherwise.
"""

from roboscape_r_ros.launching.ros_launch import launch_description


def generate_launch_description():
    return launch_description(("imagination",))
