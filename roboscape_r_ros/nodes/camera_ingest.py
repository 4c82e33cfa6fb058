"""camera_ingest: any common sensor_msgs/Image encoding in, rgb8 at the model's size out.

Subscribes  image_raw    (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8)
Publishes   observation  (sensor_msgs/Image: rgb8, output_size x output_size, same header)

A frame that cannot be converted (unknown encoding, zero size, data/step mismatch) is dropped
with a throttled warning; the node keeps running and never publishes a garbage frame.
"""

from __future__ import annotations

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from roboscape_r_ros.data.frames import INTERPOLATIONS, FrameError, decode_buffer, to_model_frame
from roboscape_r_ros.nodes.node_tools import StartupError, ThrottledWarnings, declare, spin

class CameraIngest(Node):
    def __init__(self) -> None:
        super().__init__("camera_ingest")
        self.output_size = declare(self, "output_size", 64, "side of the square rgb8 frame published on observation (pixels)", low=8, high=1024)
        self.interpolation = declare(self, "interpolation", "area", f"OpenCV resize filter: {', '.join(INTERPOLATIONS)}")
        throttle_s = declare(self, "warning_period_s", 5.0, "at most one warning per kind of bad frame in this period (seconds)", low=0.0, high=3600.0)
        if self.interpolation not in INTERPOLATIONS:
            raise StartupError(f"camera_ingest: {self._bad_interpolation(self.interpolation)}")
        self.warnings = ThrottledWarnings(self, throttle_s)
        self.dropped = 0
        self.publisher = self.create_publisher(Image, "observation", qos_profile_sensor_data)
        self.create_subscription(Image, "image_raw", self.on_image, qos_profile_sensor_data)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.get_logger().info(f"publishing {self.output_size}x{self.output_size} rgb8 frames ({self.interpolation} resize)")

    @staticmethod
    def _bad_interpolation(value: str) -> str:
        return f"interpolation '{value}' is not one of {', '.join(INTERPOLATIONS)}"

    def on_set_parameters(self, params: list) -> SetParametersResult:
        # Ranges are enforced by rclpy from the descriptors; string choices are checked here.
        values = {p.name: p.value for p in params}
        interpolation = values.get("interpolation", self.interpolation)
        if interpolation not in INTERPOLATIONS:
            return SetParametersResult(successful=False, reason=self._bad_interpolation(interpolation))
        self.output_size = values.get("output_size", self.output_size)
        self.interpolation = interpolation
        return SetParametersResult(successful=True)

    def on_image(self, msg: Image) -> None:
        try:
            rgb = decode_buffer(msg.data, width=msg.width, height=msg.height, step=msg.step, encoding=msg.encoding)
            frame = to_model_frame(rgb, self.output_size, self.interpolation)
        except FrameError as err:
            self.dropped += 1
            self.warnings.warn(err.reason, f"dropped a frame: {err} [{self.dropped} dropped in all]")
            return
        self.publisher.publish(rgb8_image(frame, msg.header))


def rgb8_image(frame: np.ndarray, header) -> Image:
    """uint8 [H, W, 3] RGB -> sensor_msgs/Image (rgb8), keeping the source header."""
    height, width = frame.shape[:2]
    return Image(header=header, height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3, data=frame.tobytes())


def main(args: list[str] | None = None) -> int:
    return spin(CameraIngest, args)


if __name__ == "__main__":
    raise SystemExit(main())
