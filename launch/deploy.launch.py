"""Deployment: the same policy_controller drives Meta-World (target:=sim) or a real arm (target:=real).

    ros2 launch roboscape_r_ros deploy.launch.py target:=sim backend:=expert task:=reach-v3
    ros2 launch roboscape_r_ros deploy.launch.py target:=real \
        camera:=/camera/color/image_raw twist_command:=/servo_node/delta_twist_cmds estop:=/estop

sim: sim_bridge + camera_ingest + policy_controller, simulated time (use_sim_time) from sim_bridge.
real: camera_ingest + policy_controller; remap `camera` to the camera topic and `command` (Action)
or one of pose_command / twist_command / array_command / trajectory_command to the arm controller
(enable that adapter with publish_<kind>: true in policy_controller.yaml under config_dir).
Every node, parameter file and remapping comes from roboscape_r_ros/launching/graph.py, the same
spec `roboscape-r launch mode=sim|real` runs. Sets FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA unless the
environment chose otherwise.
"""

from roboscape_r_ros.launching.ros_launch import launch_description


def generate_launch_description():
    return launch_description(("sim", "real"))
