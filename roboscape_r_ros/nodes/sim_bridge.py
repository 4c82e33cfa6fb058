"""sim_bridge: Meta-World as a ROS 2 node, the stand-in for Gazebo (a simulated arm with a camera).

Topics, services and behaviour: docs/nodes.md#sim_bridge.
"""

from __future__ import annotations

import time

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Header, String
from std_srvs.srv import Trigger

from roboscape_r_ros.contract.action_spec import CommandRejected, check_command
from roboscape_r_ros.contract.servo_command import ServoFollower
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.msg import Action
from roboscape_r_ros.nodes.messaging import LATCHED, RELIABLE, publish_estop_released, rgb8_image, stamp, stamp_ns
from roboscape_r_ros.nodes.node_tools import StartupError, ThrottledWarnings, declare_parameters, spin
from roboscape_r_ros.runtime.gates.step_gate import StepGate
from roboscape_r_ros.runtime.sessions.sim_session import (
    METAWORLD_OBS_NAMES,
    SimBridgeParams,
    SimFrame,
    SimSession,
    parse_scene,
)


class SimBridge(Node):
    def __init__(self) -> None:
        super().__init__("sim_bridge")
        self.params = p = declare_parameters(self, SimBridgeParams)
        try:
            self.session = SimSession(
                p.task,
                resolution=p.camera_resolution,
                camera=p.camera,
                seed=p.seed,
                max_steps=p.max_steps,
                end_on_success=p.end_on_success,
                scene=parse_scene(p.scene),
            )
        except RoboscapeError as err:
            raise StartupError(f"sim_bridge: {err}") from None
        self.warnings = ThrottledWarnings(self, p.warning_period_s)
        self.refused = 0
        self.gate = StepGate()
        self.image_pub = self.create_publisher(Image, "image_raw", qos_profile_sensor_data)
        self.state_pub = self.create_publisher(JointState, "state", RELIABLE)
        self.pose_pub = self.create_publisher(PoseStamped, "ee_pose", RELIABLE)
        self.joints_pub = self.create_publisher(JointState, "joint_states", RELIABLE)
        self.success_pub = self.create_publisher(Bool, "success", LATCHED)
        self.episode_pub = self.create_publisher(String, "episode", LATCHED)
        self.clock_pub = self.create_publisher(ClockMsg, "/clock", RELIABLE)
        publish_estop_released(self)  # the simulated arm's e-stop, never engaged
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        period_ms = f"{self.session.spec.period_s * 1e3:g} ms"
        self.servo: ServoFollower | None = None
        if p.command_interface == "servo":
            self.servo = ServoFollower(p.servo, p.world_frame_id)
            self.holding = True
            self.create_subscription(TwistStamped, "cmd_twist", self.on_twist, RELIABLE)
            self.create_timer(self.session.spec.period_s, self.on_servo_tick, clock=steady)
            stepping = (
                f"MoveIt Servo-style TwistStamped on {self.resolve_topic_name('cmd_twist')} in "
                f"'{p.world_frame_id}', one {period_ms} step per timer tick, a twist held for "
                f"{p.servo.command_timeout_s:g} s"
            )
        else:
            self.create_subscription(Action, "action", self.on_action, RELIABLE)
            stepping = f"one {period_ms} step per action"
        self.create_service(Trigger, "reset", self.on_reset)
        self.last_publish = time.monotonic()
        self.create_timer(min(p.republish_period_s, 0.1), self.on_timer, clock=steady)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.start_episode()
        self.get_logger().info(
            f"{p.task}: {p.camera_resolution}x{p.camera_resolution} frames from '{p.camera}', {stepping}, "
            f"episodes of at most {p.max_steps} steps"
        )

    # -- episodes -------------------------------------------------------------------------------
    def start_episode(self) -> SimFrame:
        frame = self.session.reset()
        self.gate.new_episode(frame.episode_id)
        if self.servo is not None:
            self.servo.new_episode(frame.time_ns)
        self.episode_pub.publish(String(data=frame.episode_id))
        self.publish_frame(frame)
        return frame

    @property
    def frame(self) -> SimFrame:
        """The session's current frame (never None: __init__ starts the first episode)."""
        frame = self.session.frame
        assert frame is not None, "start_episode ran in __init__"
        return frame

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        frame = self.start_episode()
        self.get_logger().info(f"reset: episode {frame.episode_id}")
        response.success, response.message = True, frame.episode_id
        return response

    def on_set_parameters(self, params: list) -> SetParametersResult:
        # every other parameter is read-only (its descriptor): rclpy refuses it before this runs
        for p in params:
            if p.name != "scene":
                continue
            try:
                self.session.change_scene(parse_scene(p.value))
            except RoboscapeError as err:
                self.get_logger().warning(f"scene {p.value!r} refused: {err}")
                return SetParametersResult(successful=False, reason=str(err))
            frame = self.frame
            self.get_logger().info(
                f"scene changed after step {frame.step} of episode {frame.episode_id} (sim time {frame.time_ns} ns): "
                f"{p.value or 'the training scene'}"
            )
        return SetParametersResult(successful=True)

    # -- actions --------------------------------------------------------------------------------
    def refuse(self, reason: str, message: str, what: str = "an action") -> None:
        self.refused += 1
        self.warnings.warn(
            reason, f"refused {what}: {message}; the arm does not move on it [{self.refused} refused in all]"
        )

    def on_action(self, msg: Action) -> None:
        admission = self.gate.admit(stamp_ns(msg.header), msg.episode_id, self.frame.ended)
        if admission.verdict != "step":
            if admission.verdict == "refuse":
                self.refuse(admission.reason, admission.message)
            return
        try:
            values = check_command(
                self.session.spec, names=msg.names, units=msg.units, values=msg.values, scale=msg.scale, mode=msg.mode
            )
        except CommandRejected as err:
            self.refuse(err.reason, str(err))
            return
        self.advance(values)

    def on_twist(self, msg: TwistStamped) -> None:
        linear, angular = msg.twist.linear, msg.twist.angular
        assert self.servo is not None, "cmd_twist is subscribed in servo mode only"
        try:
            self.servo.command(
                frame_id=msg.header.frame_id,
                stamp_ns=stamp_ns(msg.header),
                linear=np.array([linear.x, linear.y, linear.z]),
                angular=np.array([angular.x, angular.y, angular.z]),
                now_ns=self.frame.time_ns,
            )
        except CommandRejected as err:
            self.refuse(f"twist-{err.reason}", str(err), "a twist")

    def on_servo_tick(self) -> None:
        assert self.servo is not None, "the servo timer runs in servo mode only"
        frame = self.frame
        if frame.ended or not self.servo.started:
            return
        linear = self.servo.linear_action(frame.time_ns)
        if (linear is None) != self.holding:
            self.holding = linear is None
            if self.holding:
                self.get_logger().info(
                    f"no twist fresher than {self.params.servo.command_timeout_s:g} s at step {frame.step}: holding"
                )
        # No gripper channel: the fingers get no effort.
        self.advance(np.append(np.zeros(3) if linear is None else linear, 0.0))

    def advance(self, values: np.ndarray) -> None:
        """One control step with checked values, its frame published; the episode's end handled."""
        frame = self.session.step(values)
        self.gate.moved_on()
        self.success_pub.publish(Bool(data=frame.success))
        self.publish_frame(frame)
        if frame.ended:
            outcome = "success" if frame.success else "truncated"
            self.get_logger().info(f"episode {frame.episode_id} ended after {frame.step} steps: {outcome}")
            if self.params.auto_reset:
                self.start_episode()

    # -- output ---------------------------------------------------------------------------------
    def publish_frame(self, frame: SimFrame) -> None:
        self.gate.published(frame.time_ns)
        header = Header(stamp=stamp(frame.time_ns), frame_id=self.params.world_frame_id)
        if self.params.publish_clock:
            self.clock_pub.publish(ClockMsg(clock=header.stamp))
        self.state_pub.publish(
            JointState(header=header, name=list(METAWORLD_OBS_NAMES), position=frame.metaworld_obs.tolist())
        )
        pose = PoseStamped(header=header)
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = frame.hand_position.tolist()
        pose.pose.orientation.w = 1.0  # Meta-World's hand keeps its orientation
        self.pose_pub.publish(pose)
        self.joints_pub.publish(
            JointState(header=header, name=list(self.session.joint_names), position=frame.joint_positions.tolist())
        )
        self.image_pub.publish(
            rgb8_image(frame.image, Header(stamp=header.stamp, frame_id=self.params.camera_frame_id))
        )
        self.last_publish = time.monotonic()

    def on_timer(self) -> None:
        if time.monotonic() - self.last_publish >= self.params.republish_period_s:
            self.publish_frame(self.frame)  # same stamps: nobody acts on it twice

    def destroy_node(self) -> None:
        if getattr(self, "session", None) is not None:
            self.session.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin(SimBridge, args)


if __name__ == "__main__":
    raise SystemExit(main())
