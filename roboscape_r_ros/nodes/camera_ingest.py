"""camera_ingest: any common sensor_msgs/Image encoding in, rgb8 at the model's size out.

Topics, services and behaviour: docs/nodes.md#camera_ingest.
"""

from __future__ import annotations

from functools import partial

from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String

from roboscape_r_ros.data.frames import INTERPOLATIONS, FrameError, decode_buffer, to_model_frame
from roboscape_r_ros.data.message_values import ACTION, JOINT_STATE, POSE, reading
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.msg import Action
from roboscape_r_ros.nodes.messaging import LATCHED, RELIABLE_BACKLOG, rgb8_image, stamp_ns
from roboscape_r_ros.nodes.node_tools import StartupError, ThrottledWarnings, declare_parameters, spin
from roboscape_r_ros.runtime.sessions.ingest import CameraIngestParams

REFUSALS = {
    "nonfinite": "an action with NaN or inf values",
    "names": "an action with other names than record.action_names",
    "unmatched": "an action whose stamp answers no observation seen (lost frame, or another camera's)",
    "spec": "an action whose units, scale, limits, mode, period or frame differ from the first recorded",
}
STATE_REFUSALS = {
    "names": "a message with other names (or a value count unlike its names) than its first",
    "nonfinite": "a message with NaN or inf values",
    "order": "a message stamped before the previous one",
}
STATE_TYPES = {JOINT_STATE: JointState, POSE: PoseStamped}


class CameraIngest(Node):
    def __init__(self) -> None:
        super().__init__("camera_ingest")
        p = declare_parameters(self, CameraIngestParams)
        self.output_size, self.interpolation, record = p.output_size, p.interpolation, p.record
        self.max_age_s = record.max_age_s
        if self.interpolation not in INTERPOLATIONS:
            raise StartupError(f"camera_ingest: {self._bad_interpolation(self.interpolation)}")
        self.warnings = ThrottledWarnings(self, p.warning_period_s)
        self.dropped = 0
        self.recorder = None
        states = [(self.resolve_topic_name(t), JOINT_STATE) for t in record.joint_states]
        states += [(self.resolve_topic_name(t), POSE) for t in record.poses]
        if record.output:
            from roboscape_r_ros.runtime.sessions.recording import EpisodeRecorder  # pyarrow: only when recording

            try:
                self.recorder = EpisodeRecorder(
                    record.output,
                    task=record.task,
                    instruction=record.instruction or record.task,
                    kind=record.kind,
                    fps=record.fps,
                    camera=record.camera,
                    image_shape=(self.output_size, self.output_size, 3),
                    action_names=list(record.action_names),
                    states=states,
                    max_age_s=record.max_age_s,
                    action_topic=self.resolve_topic_name("action"),
                    overwrite=record.overwrite,
                )
            except RoboscapeError as err:
                raise StartupError(f"camera_ingest: recording: {err}") from None
        self.publisher = self.create_publisher(Image, "observation", qos_profile_sensor_data)
        if self.recorder is not None:
            # Before image_raw: an id and a frame that wait together are taken in this order, so a
            # frame published after its episode's id is tagged with it (the recorder relies on that).
            self.create_subscription(String, "episode", self.on_episode, LATCHED)
        self.create_subscription(Image, "image_raw", self.on_image, qos_profile_sensor_data)
        if self.recorder is not None:
            self.create_subscription(Action, "action", self.on_action, RELIABLE_BACKLOG)
            self.create_subscription(Bool, "success", self.on_success, RELIABLE_BACKLOG)
            for (
                topic,
                msgtype,
            ) in states:  # reliable: a lost message would drop a frame (a best-effort publisher does not match)
                callback = partial(self.on_state, topic, msgtype)
                self.create_subscription(STATE_TYPES[msgtype], topic, callback, RELIABLE_BACKLOG)
            self.reported_drops: dict[str, int] = {}
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.get_logger().info(
            f"publishing {self.output_size}x{self.output_size} rgb8 frames ({self.interpolation} resize)"
        )
        if self.recorder is not None:
            self.get_logger().info(
                f"recording observation + action episodes of '{record.task}' into {record.output} (the dataset "
                f"appears when this node stops); state from {', '.join(t for t, _ in states) or 'no topic'}"
            )

    @staticmethod
    def _bad_interpolation(value: str) -> str:
        return f"interpolation '{value}' is not one of {', '.join(INTERPOLATIONS)}"

    def on_set_parameters(self, params: list) -> SetParametersResult:
        # Ranges are enforced by rclpy from the descriptors; string choices are checked here.
        values = {p.name: p.value for p in params}
        if "output_size" in values and self.recorder is not None:  # record.* are read-only (their descriptors)
            return SetParametersResult(
                successful=False,
                reason="output_size: fixed while recording (a recording is one dataset of one frame size)",
            )
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
        if self.recorder is not None:
            self.recorder.observation(stamp_ns(msg.header), frame)

    # -- recording ------------------------------------------------------------------------------
    def on_action(self, msg: Action) -> None:
        if self.recorder is None:  # stopped after a write error
            return
        values, names, facts, _ = reading(msg, ACTION)
        try:
            refused = self.recorder.action(stamp_ns(msg.header), names, values, msg.source, msg.episode_id, facts)
        except RoboscapeError as err:  # the dataset cannot be written (disk full...): stop recording, keep converting
            self.get_logger().error(f"recording stopped: {err}")
            self.recorder = None
            return
        if refused in REFUSALS:
            self.warnings.warn(refused, f"not recorded: {REFUSALS[refused]} [{self.recorder.counts[refused]} in all]")
        for key, frames in self.recorder.dropped.items():  # "<topic> missing|stale", after an episode was written
            if frames > self.reported_drops.get(key, 0):
                self.reported_drops[key] = frames
                topic, why = key.rsplit(" ", 1)
                reason = "no message yet" if why == "missing" else f"last message older than {self.max_age_s:g} s"
                self.warnings.warn(key, f"frames not recorded: {reason} on {topic} [{frames} in all]")

    def on_state(self, topic: str, msgtype: str, msg: JointState | PoseStamped) -> None:
        if self.recorder is None:
            return
        values, names, _, _ = reading(msg, msgtype)
        refused = self.recorder.state(topic, stamp_ns(msg.header), names, values)
        if refused in STATE_REFUSALS:
            key = f"{topic} {refused}"
            self.warnings.warn(
                key, f"{topic}: not recorded: {STATE_REFUSALS[refused]} [{self.recorder.counts[key]} in all]"
            )

    def on_episode(self, msg: String) -> None:
        if self.recorder is not None:
            self.recorder.episode(msg.data)

    def on_success(self, msg: Bool) -> None:
        if msg.data and self.recorder is not None:
            self.recorder.success()

    def destroy_node(self) -> None:
        recorder, self.recorder = getattr(self, "recorder", None), None
        if recorder is not None:
            try:
                summary = recorder.close()
            except RoboscapeError as err:
                self.get_logger().error(f"recording lost: {err}")
            else:
                counts = recorder.counts | recorder.dropped
                keys = ("unanswered", *REFUSALS, *sorted(k for k in counts if " " in k))  # per state topic
                skipped = ", ".join(f"{counts[k]} {k}" for k in keys if counts[k]) or "nothing"
                outcome = (
                    f"dataset {summary.root}: {summary.episodes} episodes, {summary.frames} frames"
                    if summary
                    else "nothing recorded, no dataset written"
                )
                self.get_logger().info(f"recording finished: {outcome} (not recorded: {skipped})")
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin(CameraIngest, args)


if __name__ == "__main__":
    raise SystemExit(main())
