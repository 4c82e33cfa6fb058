"""Camera ingestion alone: a real camera's image topic in, model-size rgb8 frames out.

ros2 launch roboscape_r_ros camera_ingest.launch.py image:=/camera/color/image_raw
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    params = os.path.join(get_package_share_directory("roboscape_r_ros"), "config", "camera_ingest.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument("namespace", default_value="roboscape", description="namespace of the graph"),
            DeclareLaunchArgument("image", default_value="image_raw", description="camera image topic to ingest"),
            # Fast DDS's default transports lose most images over ~64 KB (bench/bench_latency.py).
            SetEnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA"),
            Node(
                package="roboscape_r_ros",
                executable="camera_ingest",
                namespace=LaunchConfiguration("namespace"),
                parameters=[params],
                remappings=[("image_raw", LaunchConfiguration("image"))],
                output="screen",
            ),
        ]
    )
