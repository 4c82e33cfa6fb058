"""policy_controller: observation (+ goal, + state when the backend needs it) in, one safe Action out.

Subscribes  observation  (sensor_msgs/Image, any camera_ingest encoding; sensor-data QoS)
            goal_image   (sensor_msgs/Image; reliable, transient local: a latched goal; until one
                         arrives, the goal_image_file parameter's image when set)
            state        (sensor_msgs/JointState by name; read by backends that need it, and for joint
                          feedback: joint_state_feedback)
            ee_pose      (geometry_msgs/PoseStamped; read for cmd_pose and workspace limits)
            estop        (std_msgs/Bool, reliable; latched values are read too: true stops, false
                         releases; until the first value arrives nothing is sent, so a (re)started
                         controller cannot move before it knows the e-stop's state. sim_bridge and the
                         dreamer (imagine) publish a latched false: launching/graph.py)
            episode      (std_msgs/String, transient local: a new id starts a new episode)
            reward       (roboscape_r_ros/Reward, reliable; only in learning mode)
            dream/error  (std_msgs/Float32, reliable; the dreamer's shadow-mode prediction error,
                         only with ood_guard.threshold > 0: the out-of-domain guard holds the arm
                         while it stays above the threshold; a hold longer than
                         ood_guard.hold_timeout_s ends the episode and lasts until a new one starts,
                         asked of the reset service; see runtime/ood_guard.py)
Client      reset        (std_srvs/Trigger, only with the guard on): asked for a new episode when an
                         out-of-domain hold times out (sim_bridge's in the sim graph)
Service     reload_policy (std_srvs/Trigger): swap in the policy file at `checkpoint` between two
            decisions (also on a timer with reload_check_s > 0); a file that cannot replace the
            running policy (unreadable, other sizes or action spec) is refused with one line and
            the old policy keeps driving
Publishes   action       (roboscape_r_ros/Action, reliable) and, each when enabled,
            cmd_pose (geometry_msgs/PoseStamped), cmd_twist (geometry_msgs/TwistStamped),
            cmd_array (std_msgs/Float64MultiArray), cmd_trajectory (trajectory_msgs/JointTrajectory)

Which outputs a controller can execute for the action spec is checked at start
(``runtime.adapter_config``: one line and exit status 2 otherwise). Joint-space actions go to
cmd_trajectory in the controller's joint order, values and feedback matched by joint name.

A hold (watchdog, e-stop, workspace limits, missing feedback) is published once, on the outputs of
``adapters.hold_outputs``: zero motion on rate outputs, the current pose on cmd_pose, the current
joint positions on a DELTA cmd_trajectory, nothing on delta/absolute outputs (in the default DELTA
mode no Action at all, so a per-action simulator is not stepped by it).

One action answers one observation stamp: a frame seen again (a simulator waiting for its
action republishes it) gets the same Action again, never a new one. The
policy itself sits behind ``runtime.policies`` (backend parameter), the safety rules in
``runtime.safety`` and the adapter mapping in ``runtime.adapters``: this node only converts
messages. Refused inputs or outputs produce no command and one throttled warning per kind.

Learning mode (``learning.enabled``, learned backend only, actions sampled): every decision that was
published goes to ``runtime.learner`` with its observation's stamp, every Reward too; each
``learning.rollout_steps`` settled transitions the learner runs the same PPO update as offline
training (``rl.ppo.ppo_update``) in a worker thread (``runtime.learner.BackgroundUpdates``) and
saves ``<learning.output>/policy.safetensors``. Meanwhile the controller holds (one hold, then no
commands) and keeps serving e-stop and watchdog; it resumes with the updated policy on the next
fresh frame.
"""

from __future__ import annotations

import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float32, String
from std_srvs.srv import Trigger

from roboscape_r_ros.config import load_config
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.msg import Reward
from roboscape_r_ros.nodes.command_outputs import CommandOutputs
from roboscape_r_ros.nodes.node_tools import (
    LATCHED,
    RELIABLE,
    RELIABLE_BACKLOG,
    Drops,
    StartupError,
    ThrottledWarnings,
    declare_parameters,
    limit_threads,
    serve_reload,
    spin,
    stamp_ns,
)
from roboscape_r_ros.runtime import adapters
from roboscape_r_ros.runtime.action_spec import MODE_DELTA
from roboscape_r_ros.runtime.adapter_config import startup_check
from roboscape_r_ros.runtime.controller import NO_OBSERVATION_WARN_S, DecisionGate, PolicyControllerParams, Ready
from roboscape_r_ros.runtime.feedback import ByName, Fresh, StateRejected
from roboscape_r_ros.runtime.ood_guard import OodGate
from roboscape_r_ros.runtime.policies import BackendOptions, PolicyInput, make_backend


def _ignore(_event) -> None:
    """Volatile e-stop publishers do not match the latched reader: expected, not worth a warning."""


class PolicyController(Node):
    def __init__(self) -> None:
        super().__init__("policy_controller")
        self.params = p = declare_parameters(self, PolicyControllerParams)
        limit_threads(p.threads)
        try:
            self.spec, self.safety = startup_check(p)
            options = BackendOptions(
                self.spec,
                p.task,
                p.seed,
                p.checkpoint,
                p.device,
                p.sample_actions or p.learning.enabled,
                p.runtime,
                p.threads,
            )
            self.backend = make_backend(p.backend, options)
            self.updates = self._background_updates() if p.learning.enabled else None
        except RoboscapeError as err:
            raise StartupError(f"policy_controller: {err}") from None
        self.needs_goal = p.require_goal or self.backend.needs_goal
        self.gate = DecisionGate(p.stale_after_s, p.state_tolerance_s, self.backend.needs_state)
        self.warnings = ThrottledWarnings(self, p.warning_period_s)
        self.drops = Drops(self.warnings, "no command for it")
        self.backend_state = ByName(self.backend.state_names)
        self.joint_state = ByName(self.spec.names) if p.joint_state_feedback else None
        self.joints: Fresh[np.ndarray] = Fresh(p.stale_after_s)  # joint positions in action order
        self.ee_position: Fresh[np.ndarray] = Fresh(p.stale_after_s)  # for workspace limits
        self.needs_joints = p.publish_trajectory and self.spec.mode == MODE_DELTA
        self.goal: np.ndarray | None = None
        if p.goal_image_file:
            from roboscape_r_ros.imagination.goals import load_goal_image  # torch: only with a goal file

            try:
                self.goal = np.array(load_goal_image(p.goal_image_file, None))
            except RoboscapeError as err:
                raise StartupError(f"policy_controller: goal_image_file: {err}") from None
        self.counts = {"refused": 0, "holds": 0}
        self.outputs = CommandOutputs(self, self.spec, p.outputs, p.trajectory_controller.joints, self.warnings)

        self.observation_topic = self.create_subscription(
            Image, "observation", self.on_observation, qos_profile_sensor_data
        ).topic_name
        self.create_subscription(Image, "goal_image", self.on_goal, LATCHED)
        if self.backend.needs_state or p.joint_state_feedback:
            self.create_subscription(JointState, "state", self.on_state, qos_profile_sensor_data)
        if p.publish_pose or p.workspace.enabled:
            self.create_subscription(PoseStamped, "ee_pose", self.on_ee_pose, qos_profile_sensor_data)
        self.estop_topic = self.create_subscription(Bool, "estop", self.on_estop, RELIABLE).topic_name
        self.estop_wait_told = False
        # A volatile reader gets no history, so a controller (re)started while the e-stop is engaged
        # would move. A second, latched reader gets the last value of latched e-stop publishers
        # (it cannot match volatile ones, which the first reader serves; repeats change nothing).
        self.create_subscription(
            Bool, "estop", self.on_estop, LATCHED, event_callbacks=SubscriptionEventCallbacks(incompatible_qos=_ignore)
        )
        self.create_subscription(String, "episode", self.on_episode, LATCHED)
        if self.updates is not None:
            self.create_subscription(Reward, "reward", self.on_reward, RELIABLE_BACKLOG)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(min(p.stale_after_s / 4, 0.05), self.on_watchdog, clock=steady)
        guard = p.ood_guard
        self.ood_gate = OodGate(guard.threshold, guard.trip_after, guard.release_after, guard.hold_timeout_s)
        self.episode_reset = None
        if guard.threshold > 0:
            self.create_subscription(Float32, "dream/error", self.on_dream_error, RELIABLE)
            self.episode_reset = self.create_client(Trigger, "reset")
        serve_reload(self, "reload_policy", p.checkpoint, p.reload_check_s, self.reload)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.get_logger().info(
            f"backend {self.backend.describe()} ({', '.join(p.action_names)} in {p.action_mode} mode, "
            f"{p.control_period_s * 1e3:g} ms per step); adapters: {self.outputs.describe()}; "
            f"{self.safety.describe()}; "
            f"holding after {p.stale_after_s:g} s without fresh observations"
        )
        if self.updates is not None:
            learner = self.updates.learner
            self.get_logger().info(
                f"learning mode: sampled actions, a PPO update every {learner.cfg.num_steps} transitions, "
                f"policy saved to {learner.checkpoint}"
            )

    def _background_updates(self):
        from roboscape_r_ros.rl.ppo import PPOConfig  # torch: only in learning mode
        from roboscape_r_ros.runtime.learner import BackgroundUpdates, Learner, LearnerError

        learning = self.params.learning
        if self.backend.name != "learned":
            raise LearnerError(
                f"learning mode trains the learned backend (backend:=learned), not '{self.backend.name}'"
            )
        cfg = load_config(PPOConfig, "ppo", None, [*learning.ppo.split(), f"num_steps={learning.rollout_steps}"])
        return BackgroundUpdates(Learner(self.backend.policy, cfg, learning.output))

    def reload(self) -> str:
        """The policy at the checkpoint path, swapped in between two decisions (callbacks never overlap)."""
        return f"policy reloaded: {self.backend.reload(self.params.checkpoint)}"

    def on_set_parameters(self, params: list) -> SetParametersResult:
        # The policy, action spec and safety limits are fixed at start: a running controller
        # never changes what its commands mean. Restart the node with new parameters instead.
        fixed = [p.name for p in params if p.name != "use_sim_time"]
        if fixed:
            return SetParametersResult(
                successful=False, reason=f"{', '.join(fixed)}: set at start only (restart the node)"
            )
        return SetParametersResult(successful=True)

    # -- inputs ---------------------------------------------------------------------------------
    def on_observation(self, msg: Image) -> None:
        stamp = stamp_ns(msg.header)
        arrival = self.gate.arrival(stamp, self.get_clock().now().nanoseconds * 1e-9, time.monotonic())
        if arrival.kind == "stale":
            hint = " (are the producer and this node on the same clock? use_sim_time)" if arrival.clock_mismatch else ""
            self.warnings.warn(
                "stale-clock" if arrival.clock_mismatch else "stale",
                f"dropped a stale observation: its stamp is {arrival.age_s:.3g} s old "
                f"(limit {self.params.stale_after_s:g} s){hint}",
            )
            return
        if arrival.kind == "repeat":
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
        stamp = stamp_ns(msg.header)
        if self.backend.needs_state:
            values = self._read_state(self.backend_state, msg)
            if values is not None:
                self.gate.state_received(stamp, values)
        if self.joint_state is not None:
            values = self._read_state(self.joint_state, msg)
            if values is not None:
                self.joints.set(values, stamp)
        self.try_act()

    def _read_state(self, by_name: ByName, msg: JointState) -> np.ndarray | None:
        try:
            return by_name(msg.name, msg.position)
        except StateRejected as err:
            self.warnings.warn(f"state-{err.reason}", f"dropped a state: {err}")
            return None

    def on_goal(self, msg: Image) -> None:
        goal = self.drops.decode(msg, "a goal image")
        if goal is not None:
            self.goal = goal
            self.get_logger().info(f"goal image received ({goal.shape[1]}x{goal.shape[0]})")

    def on_ee_pose(self, msg: PoseStamped) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        position, orientation = np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w])
        if not (np.isfinite(position).all() and np.isfinite(orientation).all()) or np.linalg.norm(orientation) < 1e-6:
            self.warnings.warn("ee_pose", "dropped an ee_pose with NaN/inf values or a zero quaternion")
            return
        self.outputs.ee_pose = adapters.Pose(position, orientation / np.linalg.norm(orientation))
        workspace = self.params.workspace
        if workspace.enabled and msg.header.frame_id != workspace.frame_id:
            self.warnings.warn(
                "ee_pose-frame",
                f"ee_pose is in '{msg.header.frame_id}', the workspace in '{workspace.frame_id}': not used for "
                "the limits",
            )
            return
        self.ee_position.set(position, stamp_ns(msg.header))

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
        change = self.gate.new_episode(msg.data)
        if change == "new":
            self.backend.reset(msg.data)
            self.safety.reset()
            if self.ood_gate.new_episode():
                self.get_logger().info("out-of-domain guard: a new episode ends its hold (the guard starts afresh)")
        if change != "same":
            self.get_logger().info(f"episode {msg.data}")

    def on_dream_error(self, msg: Float32) -> None:
        change = self.ood_gate.update(msg.data)
        guard = self.params.ood_guard
        if change == "hold":
            self.get_logger().warning(
                f"out-of-domain guard: dream/error above {guard.threshold:g} for {guard.trip_after} predictions "
                f"in a row (last {msg.data:.4g}): holding the arm"
            )
            self.hold("ood")
        elif change == "release":
            self.get_logger().info(
                f"out-of-domain guard: dream/error at or below {guard.threshold:g} for {guard.release_after} "
                "predictions: commands resume"
            )

    def on_reward(self, msg: Reward) -> None:
        self.updates.learner.reward(stamp_ns(msg.header), msg.episode_id, msg.reward, msg.done, msg.truncated)
        self.start_update()

    # -- learning -------------------------------------------------------------------------------
    def start_update(self) -> None:
        size = self.updates.start_if_ready()
        if size is None:
            return
        self.hold("learning")
        self.get_logger().info(
            f"learning: PPO update {self.updates.learner.counts['updates'] + 1} on {size} transitions; holding "
            "the arm (no commands) until it is done"
        )

    def finish_update(self) -> None:
        stats = self.updates.finished()
        if stats is None:
            return
        if isinstance(stats, Exception):
            self.get_logger().error(
                f"learning: the PPO update failed ({type(stats).__name__}: {stats}); acting on with the policy as it is"
            )
            return
        learner = self.updates.learner
        counts = learner.counts
        self.get_logger().info(
            f"learning: update {stats['update']:.0f} done in {stats['update_s']:.2f} s (mean reward "
            f"{stats['rollout/reward']:.3g}, "
            f"policy loss {stats['loss/policy']:.3g}, value loss {stats['loss/value']:.3g}); saved "
            f"{learner.checkpoint}; "
            f"{counts['unmatched']} rewards matched no transition, {counts['dropped']} transitions without "
            "reward; resuming"
        )
        self.start_update()

    # -- acting ---------------------------------------------------------------------------------
    def try_act(self) -> None:
        if self.safety.estop is None and self.gate.pending is not None and not self.estop_wait_told:
            self.estop_wait_told = True
            self.get_logger().warning(
                f"no value heard on {self.estop_topic} yet: no command until the e-stop's state is known (publish "
                "it latched or periodically; in the sim and imagination graphs sim_bridge and the dreamer do)"
            )
        ready = self.gate.take(
            estop=self.safety.stopped,
            paused=(self.updates is not None and self.updates.busy) or self.ood_gate.holding,
            goal_missing=self.needs_goal and self.goal is None,
        )
        if ready == "no-goal":
            self.warnings.warn(
                "goal", "no goal image yet (goal_image is published transient local by the goal source): no command"
            )
        if not isinstance(ready, Ready):
            return
        header, image = ready.pending.payload
        try:
            raw = self.backend.act(PolicyInput(image=image, goal=self.goal, state=ready.state, step=self.gate.step))
        except Exception as err:  # a policy bug must not take the arm's controller down
            self.counts["refused"] += 1
            self.warnings.warn(
                "backend", f"backend '{self.backend.name}' failed ({type(err).__name__}: {err}): no command"
            )
            return
        clock_s = self.get_clock().now().nanoseconds * 1e-9
        joints = self.joints.get(clock_s)
        if self.needs_joints and joints is None:
            self.warnings.warn("no-joint-state", "no fresh joint positions on state for a DELTA joint target: holding")
            self.hold("no-joint-state")
            return
        verdict = self.safety.check(raw, self.ee_position.get(clock_s))
        if not verdict.ok:
            self.counts["refused"] += 1
            self.warnings.warn(verdict.reason, f"{verdict.message} [{self.counts['refused']} refused in all]")
            if verdict.hold:
                self.hold(verdict.reason)
            return
        if verdict.rate_limited:
            self.warnings.warn("rate", "policy output changed faster than max_delta: rate-limited")
        if verdict.clipped:
            self.warnings.warn("workspace-clip", verdict.message)
        self.outputs.publish(
            verdict.command,
            header.stamp,
            step=self.gate.step,
            episode_id=self.gate.episode_id,
            source=self.backend.source,
            joints=joints,
        )
        self.gate.decided(ready.pending.stamp)
        if self.updates is not None and self.backend.last_decision is not None:
            self.updates.learner.record(ready.pending.stamp, self.gate.episode_id, self.backend.last_decision)
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
                joints=self.joints.get(self.get_clock().now().nanoseconds * 1e-9),
            )
            self.counts["holds"] += 1

    def on_watchdog(self) -> None:
        if self.updates is not None:
            self.finish_update()
        tick = self.gate.tick(time.monotonic())
        if tick.dropped_waiting:
            wanted = "a state stamped like it" if self.backend.needs_state else "its inputs"
            self.warnings.warn(
                "waiting", f"dropped an observation without {wanted} within {self.params.stale_after_s:g} s: no command"
            )
        if tick.never_observed:
            self.get_logger().warning(
                f"no observation on {self.observation_topic} in {NO_OBSERVATION_WARN_S:g} s since start: no "
                "command; check that the camera publishes there, and that every process of the graph uses the same "
                "FASTDDS_BUILTIN_TRANSPORTS (a LARGE_DATA publisher and a default subscriber exchange no images)"
            )
        if tick.hold:
            self.warnings.warn("watchdog", f"no fresh observation for {tick.silence_s:.2g} s: holding the arm")
            self.hold("watchdog")
        if self.ood_gate.tick(time.monotonic()):
            self.get_logger().warning(
                f"out-of-domain guard: held for {self.params.ood_guard.hold_timeout_s:g} s: episode "
                f"{self.gate.episode_id or '(none heard)'} ended; the arm stays still until a new episode starts"
            )
            self.request_new_episode()

    def request_new_episode(self) -> None:
        """Ask the reset service for a new episode; its new id on ``episode`` ends the hold."""
        name = self.resolve_service_name(self.episode_reset.srv_name)
        if not self.episode_reset.service_is_ready():
            self.get_logger().warning(f"out-of-domain guard: {name} is not available: waiting for a new episode")
            return

        def answered(future) -> None:
            reply = future.result()
            if reply is None or not reply.success:
                why = reply.message if reply is not None else "no reply"
                self.get_logger().warning(f"out-of-domain guard: {name} refused a new episode: {why}")
            else:
                self.get_logger().info(f"out-of-domain guard: asked {name} for a new episode: {reply.message}")

        self.episode_reset.call_async(Trigger.Request()).add_done_callback(answered)

    def destroy_node(self) -> None:
        if getattr(self, "updates", None) is not None:
            self.updates.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin(PolicyController, args)


if __name__ == "__main__":
    raise SystemExit(main())
