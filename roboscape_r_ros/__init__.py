"""roboscape_r_ros: train manipulation policies in a learned world model (RoboScape-R) with ROS 2."""

# The generated message module (roboscape_r_ros.msg) is installed by CMake into site-packages or a
# colcon install space; merging package paths lets it import beside a source checkout too.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
