"""The ROS 2 node graph: one spec (graph.py), turned into `ros2 launch` descriptions (ros_launch.py)
and into real processes where `ros2 launch` is not installed (runner.py, `roboscape-r launch`)."""
