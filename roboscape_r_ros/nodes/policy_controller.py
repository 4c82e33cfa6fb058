"""policy_controller: observation (+ goal, + state when the backend needs it) in, one safe Action out.

Topics, services and behaviour: docs/nodes.md#policy_controller.
"""

from __future__ import annotations

import time

from geometry_msgs.msg import PoseStamped
from rclpy.client import Client
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float32, String
from std_srvs.srv import Trigger

from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.msg import Reward
from roboscape_r_ros.nodes.command_outputs import CommandOutputs
from roboscape_r_ros.nodes.messaging import LATCHED, RELIABLE, RELIABLE_BACKLOG, ask_trigger, stamp_ns, subscribe_estop
from roboscape_r_ros.nodes.node_tools import (
    Drops,
    StartupError,
    ThrottledWarnings,
    declare_parameters,
    limit_threads,
    serve_reload,
    spin,
)
from roboscape_r_ros.runtime.gates.controller import PolicyControllerParams
from roboscape_r_ros.runtime.sessions.control_session import ControlSession


class PolicyController(Node):
    def __init__(self) -> None:
        super().__init__("policy_controller")
        self.params = p = declare_parameters(self, PolicyControllerParams)
        limit_threads(p.threads)
        try:
            self.session = ControlSession(p)
        except RoboscapeError as err:
            raise StartupError(f"policy_controller: {err}") from None
        self.backend, self.gate, self.safety = self.session.backend, self.session.gate, self.session.safety
        self.updates = self.session.updates
        self.warnings = ThrottledWarnings(self, p.warning_period_s)
        self.drops = Drops(self.warnings, "no command for it")
        self.outputs = CommandOutputs(self, self.session.spec, p.outputs, p.trajectory_controller.joints, self.warnings)
        self.observation_topic = self.create_subscription(
            Image, "observation", self.on_observation, qos_profile_sensor_data
        ).topic_name
        self.create_subscription(Image, "goal_image", self.on_goal, LATCHED)
        if self.backend.needs_state or p.joint_state_feedback:
            self.create_subscription(JointState, "state", self.on_state, qos_profile_sensor_data)
        if p.publish_pose or p.workspace.enabled:
            self.create_subscription(PoseStamped, "ee_pose", self.on_ee_pose, qos_profile_sensor_data)
        self.estop_topic = subscribe_estop(self, self.on_estop)
        self.estop_wait_told = False
        self.create_subscription(String, "episode", self.on_episode, LATCHED)
        if self.updates is not None:
            self.create_subscription(Reward, "reward", self.on_reward, RELIABLE_BACKLOG)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(min(p.stale_after_s / 4, 0.05), self.on_watchdog, clock=steady)
        self.episode_reset: Client[Trigger.Request, Trigger.Response] | None = None
        if p.ood_guard.threshold > 0:
            self.create_subscription(Float32, "dream/error", self.on_dream_error, RELIABLE)
            self.episode_reset = self.create_client(Trigger, "reset")
        serve_reload(self, "reload_policy", p.checkpoint, p.reload_check_s, self.reload)
        self.get_logger().info(
            f"backend {self.backend.describe()} ({', '.join(p.action_names)} in {p.action_mode} mode, "
            f"{p.control_period_s * 1e3:g} ms per step); adapters: {self.outputs.describe()}; "
            f"{self.safety.describe()}; holding after {p.stale_after_s:g} s without fresh observations"
        )
        if self.updates is not None:
            self.get_logger().info(self.updates.describe())

    def reload(self) -> str:
        """The policy at the checkpoint path, swapped in between two decisions (callbacks never overlap)."""
        return f"policy reloaded: {self.backend.reload(self.params.checkpoint)}"

    # -- inputs ---------------------------------------------------------------------------------
    def on_observation(self, msg: Image) -> None:
        stamp = stamp_ns(msg.header)
        kind, problem = self.session.arrival(stamp, self.get_clock().now().nanoseconds * 1e-9, time.monotonic())
        if problem is not None:
            self.warnings.warn(*problem)
            return
        if kind == "repeat":
            if not self.safety.stopped:
                self.outputs.repeat()
            return
        image = self.drops.decode(msg, "an observation")
        if image is None:
            return
        if self.gate.accept(stamp, (msg.header, image), time.monotonic()):
            self.get_logger().info("fresh observations again: resuming")
        self.try_act()

    def on_state(self, msg: JointState) -> None:
        for kind, message in self.session.read_state(msg.name, msg.position, stamp_ns(msg.header)):
            self.warnings.warn(kind, message)
        self.try_act()

    def on_goal(self, msg: Image) -> None:
        goal = self.drops.decode(msg, "a goal image")
        if goal is not None:
            self.session.goal = goal
            self.get_logger().info(f"goal image received ({goal.shape[1]}x{goal.shape[0]})")

    def on_ee_pose(self, msg: PoseStamped) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        pose, problem = self.session.read_ee_pose(
            [p.x, p.y, p.z], [q.x, q.y, q.z, q.w], msg.header.frame_id, stamp_ns(msg.header)
        )
        if pose is not None:
            self.outputs.ee_pose = pose
        if problem is not None:
            self.warnings.warn(*problem)

    def on_estop(self, msg: Bool) -> None:
        first = self.safety.estop is None
        if not self.safety.set_estop(bool(msg.data)):
            return
        if first and not msg.data:
            self.get_logger().info(f"e-stop not engaged ({self.estop_topic}): commands allowed")
        elif msg.data:
            self.get_logger().error("E-STOP engaged: holding, no commands until estop is released (false)")
            self.hold("estop")
        else:
            self.get_logger().warning("e-stop released: commands resume from rest")
            self.safety.reset()

    def on_episode(self, msg: String) -> None:
        change = self.session.new_episode(msg.data)
        if change == "new":
            if self.session.ood_gate.new_episode():
                self.get_logger().info("out-of-domain guard: a new episode ends its hold (the guard starts afresh)")
        if change != "same":
            self.get_logger().info(f"episode {msg.data}")

    def on_dream_error(self, msg: Float32) -> None:
        change = self.session.ood_gate.update(msg.data)
        if change == "hold":
            self.get_logger().warning(self.session.ood_gate.describe(change, msg.data))
            self.hold("ood")
        elif change == "release":
            self.get_logger().info(self.session.ood_gate.describe(change, msg.data))

    def on_reward(self, msg: Reward) -> None:
        assert self.updates is not None, "reward is subscribed only with background updates"
        self.updates.learner.reward(stamp_ns(msg.header), msg.episode_id, msg.reward, msg.done, msg.truncated)
        self.start_update()

    # -- learning -------------------------------------------------------------------------------
    def start_update(self) -> None:
        assert self.updates is not None, "called only with background updates"
        started = self.updates.start()
        if started is not None:
            self.hold("learning")
            self.get_logger().info(started)

    def finish_update(self) -> None:
        assert self.updates is not None, "called only with background updates"
        finished = self.updates.finish()
        if finished is None:
            return
        succeeded, message = finished
        if not succeeded:
            self.get_logger().error(message)
            return
        self.get_logger().info(message)
        self.start_update()

    # -- acting ---------------------------------------------------------------------------------
    def try_act(self) -> None:
        if self.safety.estop is None and self.gate.pending is not None and not self.estop_wait_told:
            self.estop_wait_told = True
            self.get_logger().warning(
                f"no value heard on {self.estop_topic} yet: no command until the e-stop's state is known (publish "
                "it latched or periodically; in the sim and imagination graphs sim_bridge and the dreamer do)"
            )
        decision = self.session.decide(self.get_clock().now().nanoseconds * 1e-9)
        if decision is None:
            return
        for kind, message in decision.problems:
            self.warnings.warn(kind, message)
        if decision.kind == "hold":
            self.hold(decision.reason)
        elif decision.kind == "publish":
            assert decision.command is not None, "a publish decision carries its command"
            header = decision.payload[0]
            self.outputs.publish(
                decision.command,
                header.stamp,
                step=self.gate.step,
                episode_id=self.gate.episode_id,
                source=self.backend.source,
                joints=decision.joints,
            )
            self.session.published(decision)
            if self.updates is not None:
                self.start_update()

    def hold(self, why: str) -> None:
        """Once: the hold command (SafetyFilter.hold) on the hold outputs; then silence until fresh
        observations (or the e-stop's release)."""
        command = self.safety.hold()
        if self.gate.hold():
            self.outputs.publish(
                command,
                self.get_clock().now().to_msg(),
                step=self.gate.step,
                episode_id=self.gate.episode_id,
                source=f"hold:{why}",
                hold=True,
                joints=self.session.joints.get(self.get_clock().now().nanoseconds * 1e-9),
            )

    def on_watchdog(self) -> None:
        if self.updates is not None:
            self.finish_update()
        watch = self.session.watchdog(time.monotonic(), self.observation_topic)
        for problem in watch.problems:
            self.warnings.warn(*problem)
        for line in watch.log:
            self.get_logger().warning(line)
        if watch.hold:
            self.hold(watch.hold)
        if watch.episode_over:  # a new id on episode ends the guard's hold
            ask_trigger(self, self.episode_reset, "out-of-domain guard", "a new episode")

    def destroy_node(self) -> None:
        if getattr(self, "session", None) is not None:
            self.session.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin(PolicyController, args)


if __name__ == "__main__":
    raise SystemExit(main())
