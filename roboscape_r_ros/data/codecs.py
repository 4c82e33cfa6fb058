"""Frame codecs for the episode dataset: lossless PNG bytes and (lossy) MP4 files.

Frames are RGB ``uint8 [H,W,3]`` everywhere in the package; OpenCV works in BGR, so every call
here converts at the boundary. PNG files hold RGB as the format defines, so PIL, HF ``datasets``
and LeRobot decode them the same way.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from roboscape_r_ros.errors import RoboscapeError

# MPEG-4 Part 2 is the one MP4 encoder in the opencv-python wheels (no H.264/AV1 there).
MP4_FOURCC = "mp4v"
MP4_CODEC = "mpeg4"
MP4_PIX_FMT = "yuv420p"


class CodecError(RoboscapeError, ValueError):
    """A frame that cannot be encoded or decoded; callers add the file it belongs to."""


def encode_png(frame: np.ndarray) -> bytes:
    """``uint8 [H,W,3]`` RGB -> PNG bytes (lossless)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise CodecError(f"PNG encoding failed for a frame of shape {frame.shape}")
    return buf.tobytes()


def decode_png(data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """PNG bytes -> ``uint8 [H,W,3]`` RGB; the decoded shape must equal ``shape``."""
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    if frame is None:
        raise CodecError("not a decodable PNG image")
    if frame.shape != shape:
        raise CodecError(f"PNG image has shape {frame.shape}, expected {shape}")
    return frame


class Mp4Writer:
    """Appends RGB frames to one MP4 file; many episodes share a file (LeRobot v3)."""

    def __init__(self, path: Path, fps: int, height: int, width: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.num_frames = 0
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*MP4_FOURCC), fps, (width, height))
        if not self._writer.isOpened():
            raise CodecError(f"{path}: OpenCV cannot open an {MP4_CODEC} video writer")

    def write(self, frames: np.ndarray) -> None:  # frames: uint8 [T,H,W,3] RGB
        for frame in frames:
            self._writer.write(np.ascontiguousarray(frame[..., ::-1]))
        self.num_frames += len(frames)

    def size_bytes(self) -> int:
        # What is on disk so far: FFmpeg flushes in 256 KB blocks, so this lags the final size by
        # at most that much (negligible against LeRobot's 500 MB video file limit).
        return self.path.stat().st_size if self.path.exists() else 0

    def close(self) -> None:
        self._writer.release()


def read_mp4(path: Path, num_frames: int, shape: tuple[int, int, int]) -> np.ndarray:
    """The first ``num_frames`` frames of an MP4 file -> ``uint8 [num_frames,H,W,3]`` RGB.

    OpenCV decodes what this package writes (MPEG-4 Part 2), H.264 and HEVC; its FFmpeg has no AV1
    decoder, and AV1 is LeRobot's default codec: PyAV (with libdav1d) decodes those."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise CodecError("OpenCV cannot open the video")
    try:
        if int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").lower() == b"av01":
            return _read_mp4_pyav(path, num_frames, shape)
        frames = np.empty((num_frames, *shape), np.uint8)
        for i in range(num_frames):
            ok, frame = capture.read()
            if not ok:
                raise CodecError(f"video ends after {i} frames, expected {num_frames}")
            if frame.shape != shape:
                raise CodecError(f"video frames have shape {frame.shape}, expected {shape}")
            cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=frames[i])
    finally:
        capture.release()
    return frames


def _read_mp4_pyav(path: Path, num_frames: int, shape: tuple[int, int, int]) -> np.ndarray:
    try:
        import av
    except ImportError:
        raise CodecError("AV1 video: OpenCV cannot decode it and PyAV is not installed (pip install av)") from None
    frames = np.empty((num_frames, *shape), np.uint8)
    try:
        with av.open(str(path)) as container:
            decoded = container.decode(video=0)
            for i in range(num_frames):
                frame = next(decoded, None)
                if frame is None:
                    raise CodecError(f"video ends after {i} frames, expected {num_frames}")
                if (frame.height, frame.width, 3) != shape:
                    raise CodecError(f"video frames have shape {(frame.height, frame.width, 3)}, expected {shape}")
                frames[i] = frame.to_ndarray(format="rgb24")
    except av.FFmpegError as err:
        raise CodecError(f"PyAV cannot decode the AV1 video ({err})") from None
    return frames
