"""camera_ingest's parameters: the conversion of camera frames and the optional episode recording
(the conversion is data/frames.py, the recording runtime/sessions/recording.py)."""

from __future__ import annotations

from dataclasses import dataclass

from roboscape_r_ros.contract.action_spec import metaworld_action_spec
from roboscape_r_ros.parameters import parameter


@dataclass(frozen=True)
class RecordParams:
    output: str = parameter(
        "", "record observation + action episodes into a new dataset folder here (empty: no recording)"
    )
    task: str = parameter("", "task name of the recorded episodes (needed when recording)")
    instruction: str = parameter("", "instruction of the recorded episodes (empty: the task name)")
    kind: str = parameter("expert", "how the recorded episodes were made: expert, noisy, failed or random")
    fps: int = parameter(80, "frame rate written into the dataset (Meta-World controls at 80 Hz)", low=1, high=10_000)
    camera: str = parameter("camera", "camera name in the dataset (observation.images.<camera>)")
    action_names: tuple[str, ...] = parameter(
        metaworld_action_spec().names, "names of the recorded Actions, in order (others are refused)"
    )
    joint_states: tuple[str, ...] = parameter(
        ("state",),
        "sensor_msgs/JointState topics recorded into observation.state (positions, named <joint>.pos); "
        "sim_bridge's state is the 39-d Meta-World observation by name",
    )
    poses: tuple[str, ...] = parameter(
        ("ee_pose",),
        "geometry_msgs/PoseStamped topics recorded into observation.state (<topic>.x, .y, .z, .qx, .qy, .qz, .qw)",
    )
    max_age_s: float = parameter(
        0.1,
        "a frame is recorded when every state topic's last message at or before it is at most this old (s); "
        "else it is dropped and counted",
        low=1e-6,
        high=3600.0,
    )
    overwrite: bool = parameter(False, "replace an existing dataset at record.output")


@dataclass(frozen=True)
class CameraIngestParams:
    output_size: int = parameter(
        64,
        "side of the square rgb8 frame published on observation (pixels); fixed while recording",
        low=8,
        high=1024,
        read_only=False,
    )
    interpolation: str = parameter("area", "OpenCV resize filter: area, linear or nearest", read_only=False)
    warning_period_s: float = parameter(
        5.0, "at most one warning per kind of bad frame in this period (seconds)", low=0.0, high=3600.0
    )
    record: RecordParams = RecordParams()
