"""camera_ingest as a real process on a private ROS domain: encodings in, rgb8 at model size out,
and bad frames dropped with one throttled warning each while the node keeps running."""

import cv2
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data

sensor_msgs = pytest.importorskip("sensor_msgs.msg")
Image = sensor_msgs.Image

RED, BLUE = (255, 0, 0), (0, 0, 255)


def split_scene(width: int, height: int) -> np.ndarray:
    """RGB [H, W, 3]: left half red, right half blue."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, : width // 2] = RED
    rgb[:, width // 2 :] = BLUE
    return rgb


def encode(rgb: np.ndarray, encoding: str, pad: int = 0) -> Image:
    converted = {
        "rgb8": lambda x: x,
        "bgr8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2BGR),
        "rgba8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2RGBA),
        "bgra8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2BGRA),
        "mono8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY),
    }[encoding](rgb)
    height, width = rgb.shape[:2]
    rows = converted.reshape(height, -1)
    if pad:
        rows = np.hstack([rows, np.full((height, pad), 77, np.uint8)])
    msg = Image(height=height, width=width, encoding=encoding, step=rows.shape[1], data=rows.tobytes())
    msg.header.frame_id = "camera"
    return msg


class Link:
    """Publisher to image_raw and collector of observation frames on the harness node."""

    def __init__(self, ros) -> None:
        self.ros = ros
        self.pub = ros.node.create_publisher(Image, "image_raw", qos_profile_sensor_data)
        self.frames: list[Image] = []
        ros.node.create_subscription(Image, "observation", self.frames.append, qos_profile_sensor_data)

    def roundtrip(self, msg: Image, timeout_s: float = 10.0) -> Image:
        """Publish msg (again each tick: best effort may drop) until a new frame comes back."""
        seen = len(self.frames)
        assert self.ros.spin_until(lambda: len(self.frames) > seen, timeout_s, tick=lambda: self.pub.publish(msg)), (
            "no frame came back"
        )
        return self.frames[-1]


def as_array(msg: Image) -> np.ndarray:
    return np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)


def test_every_encoding_becomes_rgb8_at_model_size(ros):
    ros.start(
        "roboscape_r_ros.nodes.camera_ingest", "--params-file", "config/camera_ingest.yaml", "-p", "output_size:=64"
    )
    link = Link(ros)
    scene = split_scene(160, 120)
    for encoding in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8"):
        out = link.roundtrip(encode(scene, encoding))
        assert (out.encoding, out.width, out.height, out.step) == ("rgb8", 64, 64, 192), encoding
        assert out.header.frame_id == "camera"
        frame = as_array(out)
        left, right = frame[32, 4].astype(int), frame[32, 59].astype(int)
        if encoding == "mono8":
            assert left[0] == left[1] == left[2] and right[0] == right[1] == right[2]
            assert abs(left[0] - right[0]) > 20  # red and blue have different luma
        else:
            assert np.abs(left - RED).max() <= 2 and np.abs(right - BLUE).max() <= 2, encoding
    # Row padding (step > width * channels) is honoured, not read as pixels.
    padded = as_array(link.roundtrip(encode(scene, "bgr8", pad=8)))
    assert np.abs(padded[32, 4].astype(int) - RED).max() <= 2


def test_bad_frames_are_dropped_with_one_warning_each_and_the_node_keeps_running(ros):
    proc = ros.start("roboscape_r_ros.nodes.camera_ingest", "-p", "warning_period_s:=60.0")
    link = Link(ros)
    good = encode(split_scene(64, 48), "rgb8")
    link.roundtrip(good)  # discovery done, node up
    wrong_encoding = encode(split_scene(64, 48), "rgb8")
    wrong_encoding.encoding = "yuv422"
    zero_size = Image(height=0, width=0, encoding="rgb8", step=0, data=b"")
    mismatch = encode(split_scene(64, 48), "rgb8")
    mismatch.data = mismatch.data[:-100]
    ros.spin_until(lambda: False, 0.5)  # the good frame was published every tick: let late copies land
    seen = len(link.frames)
    for _ in range(15):
        for bad in (wrong_encoding, zero_size, mismatch):
            link.pub.publish(bad)
        ros.spin_until(lambda: False, 0.02)
    ros.spin_until(lambda: False, 0.5)
    assert len(link.frames) == seen, "a bad frame produced output"
    assert proc.poll() is None, "node died on bad input"
    link.roundtrip(good)  # still converting good frames
    log = ros.stop(proc)
    warnings = [line for line in log.splitlines() if "dropped a frame" in line]
    assert len(warnings) == 3, log
    assert any("encoding 'yuv422' is not supported" in w for w in warnings)
    assert any("zero-size" in w for w in warnings)
    assert any("data holds" in w for w in warnings)
    assert "Traceback" not in log


@pytest.mark.parametrize(
    "param, expected",
    [
        ("interpolation:=cubic", "interpolation 'cubic'"),
        ("record.output:=/tmp/roboscape-not-written", "recording: a task name is needed (record.task)"),
    ],
)
def test_bad_startup_parameters_are_refused_with_their_reason(ros, param, expected):
    """camera_ingest's own checks (resize filters, recording), in this process; the node's
    process ending with one such line: test_node_parameters."""
    from helpers.ros_harness import startup_error
    from roboscape_r_ros.nodes.camera_ingest import CameraIngest

    assert expected in startup_error(ros, CameraIngest, param)
