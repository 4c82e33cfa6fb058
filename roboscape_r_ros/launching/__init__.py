"""The ROS 2 node graph: one spec (graph.py), turned into `ros2 launch` descriptions (ros_launch.py), into
real processes where `ros2 launch` is not installed (commands/launch.py, `roboscape-r launch`) and into the
nodes' parameter files (parameter_files.py)."""
