"""Raw camera buffers to model frames: decode an encoding, centre-crop to square, resize.

Pure numpy + OpenCV, no ROS: the camera_ingest node passes the fields of a sensor_msgs/Image,
and recorders or offline importers use the same path, so every frame the world model sees was
made the same way.
"""

from __future__ import annotations

import cv2
import numpy as np

from roboscape_r_ros.errors import RoboscapeError

# encoding -> (channels, OpenCV conversion to RGB or None when already RGB)
ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}

INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


class FrameError(RoboscapeError):
    """A camera buffer that cannot become a frame. ``reason`` is a short stable key for throttling."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def decode_buffer(data: bytes | np.ndarray, *, width: int, height: int, step: int, encoding: str) -> np.ndarray:
    """A raw image buffer (ROS Image fields) -> uint8 [height, width, 3] RGB, or FrameError."""
    if encoding not in ENCODINGS:
        raise FrameError("encoding", f"encoding '{encoding}' is not supported (use one of {', '.join(ENCODINGS)})")
    if width <= 0 or height <= 0:
        raise FrameError("size", f"image is {width}x{height}: zero-size images carry no frame")
    channels, conversion = ENCODINGS[encoding]
    row_bytes = width * channels
    if step < row_bytes:
        raise FrameError(
            "step", f"step {step} is shorter than one row of {width} {encoding} pixels ({row_bytes} bytes)"
        )
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buffer.size != step * height:
        raise FrameError("data", f"data holds {buffer.size} bytes, step x height says {step * height}")
    # Rows may be padded beyond width*channels: drop the padding through a strided view.
    pixels = buffer.reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if conversion is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels, conversion)


def center_crop_square(frame: np.ndarray) -> np.ndarray:
    """[H, W, C] -> [S, S, C] with S = min(H, W), keeping the centre."""
    height, width = frame.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return frame[top : top + side, left : left + side]


def to_model_frame(frame: np.ndarray, size: int, interpolation: str = "area") -> np.ndarray:
    """RGB uint8 [H, W, 3] -> centre-cropped, resized uint8 [size, size, 3]."""
    if interpolation not in INTERPOLATIONS:
        raise FrameError("interpolation", f"interpolation '{interpolation}' is not one of {', '.join(INTERPOLATIONS)}")
    square = center_crop_square(frame)
    if square.shape[0] == size:
        return np.ascontiguousarray(square)
    return cv2.resize(square, (size, size), interpolation=INTERPOLATIONS[interpolation])
