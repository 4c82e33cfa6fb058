"""policy_controller: observation (+ goal, + state when the backend needs it) in, one safe Action out.

Subscribes  observation  (sensor_msgs/Image, any camera_ingest encoding; sensor-data QoS)
            goal_image   (sensor_msgs/Image; reliable, transient local: a latched goal)
            state        (sensor_msgs/JointState by name; only read by backends that need it)
            ee_pose      (geometry_msgs/PoseStamped; only read for the PoseStamped adapter)
            estop        (std_msgs/Bool, reliable: true stops, false releases)
            episode      (std_msgs/String, transient local: a new id starts a new episode)
            reward       (roboscape_r_ros/Reward, reliable; only in learning mode)
            dream/error  (std_msgs/Float32, reliable; the dreamer's shadow-mode prediction error,
                         only with ood_guard.threshold > 0: the out-of-domain guard holds the arm
                         while it stays above the threshold, see runtime/ood_guard.py)
Service     reload_policy (std_srvs/Trigger): swap in the policy file at `checkpoint` between two
            decisions (also on a timer with reload_check_s > 0); a file that cannot replace the
            running policy (unreadable, other sizes or action spec) is refused with one line and
            the old policy keeps driving
Publishes   action       (roboscape_r_ros/Action, reliable) and, each when enabled,
            cmd_pose (geometry_msgs/PoseStamped), cmd_twist (geometry_msgs/TwistStamped),
            cmd_array (std_msgs/Float64MultiArray), cmd_trajectory (trajectory_msgs/JointTrajectory)

A hold (watchdog, e-stop) is published once, on the outputs of ``adapters.hold_outputs``: zero
motion on rate outputs, the current pose on cmd_pose, nothing on delta/absolute outputs (in the
default DELTA mode no Action at all, so a per-action simulator is not stepped by it).

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
    spin,
    stamp_ns,
)
from roboscape_r_ros.runtime import adapters
from roboscape_r_ros.runtime.action_spec import MODE_NAMES, ActionSpec
from roboscape_r_ros.runtime.controller import DecisionGate, PolicyControllerParams, Ready
from roboscape_r_ros.runtime.ood_guard import OodGate
from roboscape_r_ros.runtime.policies import BackendOptions, PolicyInput, make_backend
from roboscape_r_ros.runtime.reload import FileWatch
from roboscape_r_ros.runtime.safety import SafetyFilter

MODES = {name: mode for mode, name in MODE_NAMES.items()}


class PolicyController(Node):
    def __init__(self) -> None:
        super().__init__("policy_controller")
        self.params = p = declare_parameters(self, PolicyControllerParams)
        try:
            self.spec = ActionSpec(
                p.action_names,
                p.action_units,
                p.action_scale,
                p.action_lower,
                p.action_upper,
                MODES[p.action_mode],
                p.control_period_s,
                p.frame_id,
                p.hold_last,
            )
            self.safety = SafetyFilter(self.spec, p.max_delta)
            options = BackendOptions(
                self.spec, p.task, p.seed, p.checkpoint, p.device, p.sample_actions or p.learning.enabled, p.runtime
            )
            self.backend = make_backend(p.backend, options)
            self.updates = self._background_updates() if p.learning.enabled else None
        except RoboscapeError as err:
            raise StartupError(f"policy_controller: {err}") from None
        if len(p.trajectory_joint_names) != self.spec.dim:
            raise StartupError(
                f"policy_controller: trajectory_joint_names has {len(p.trajectory_joint_names)} names, the action "
                f"{self.spec.dim}"
            )
        for output, enabled in p.outputs.items():
            why = adapters.supported(self.spec, output) if enabled else None
            if why:
                raise StartupError(f"policy_controller: publish_{output}: {why}")
        self.needs_goal = p.require_goal or self.backend.needs_goal
        self.gate = DecisionGate(p.stale_after_s, p.state_tolerance_s, self.backend.needs_state)
        self.warnings = ThrottledWarnings(self, p.warning_period_s)
        self.drops = Drops(self.warnings, "no command for it")
        self.state_index: dict[tuple[str, ...], np.ndarray | None] = {}
        self.goal: np.ndarray | None = None
        self.counts = {"refused": 0, "holds": 0}
        self.outputs = CommandOutputs(self, self.spec, p.outputs, p.trajectory_joint_names, self.warnings)

        self.create_subscription(Image, "observation", self.on_observation, qos_profile_sensor_data)
        self.create_subscription(Image, "goal_image", self.on_goal, LATCHED)
        if self.backend.needs_state:
            self.create_subscription(JointState, "state", self.on_state, qos_profile_sensor_data)
        if p.publish_pose:
            self.create_subscription(PoseStamped, "ee_pose", self.on_ee_pose, qos_profile_sensor_data)
        self.create_subscription(Bool, "estop", self.on_estop, RELIABLE)
        self.create_subscription(String, "episode", self.on_episode, LATCHED)
        if self.updates is not None:
            self.create_subscription(Reward, "reward", self.on_reward, RELIABLE_BACKLOG)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(min(p.stale_after_s / 4, 0.05), self.on_watchdog, clock=steady)
        self.create_service(Trigger, "reload_policy", self.on_reload)
        guard = p.ood_guard
        self.ood_gate = OodGate(guard.threshold, guard.trip_after, guard.release_after)
        if guard.threshold > 0:
            self.create_subscription(Float32, "dream/error", self.on_dream_error, RELIABLE)
        self.policy_file = FileWatch(p.checkpoint) if p.checkpoint else None
        if self.policy_file is not None and p.reload_check_s > 0:
            self.create_timer(p.reload_check_s, self.on_policy_file_check, clock=steady)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.get_logger().info(
            f"backend {self.backend.describe()} ({', '.join(p.action_names)} in {p.action_mode} mode, "
            f"{p.control_period_s * 1e3:g} ms per step); adapters: {self.outputs.describe()}; "
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

    def on_reload(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.reload()
        return response

    def on_policy_file_check(self) -> None:
        if self.policy_file.changed():
            self.reload()

    def reload(self) -> tuple[bool, str]:
        """The policy at the checkpoint path, swapped in between two decisions (callbacks never overlap)."""
        try:
            what = self.backend.reload(self.params.checkpoint)
        except RoboscapeError as err:
            self.get_logger().error(str(err))
            return False, str(err)
        self.get_logger().info(f"policy reloaded: {what}")
        return True, what

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
            if not self.safety.estop:
                self.outputs.repeat()
            return
        image = self.drops.decode(msg, "an observation")
        if image is None:
            return
        if self.gate.accept(stamp, (msg.header, image), time.monotonic()):
            self.get_logger().info("fresh observations again: resuming")
        self.try_act()

    def on_state(self, msg: JointState) -> None:
        names = tuple(msg.name)
        if names not in self.state_index:
            self.state_index[names] = self._index(names)
        index = self.state_index[names]
        if index is None or len(msg.position) != len(names):
            missing = sorted(set(self.backend.state_names or ()) - set(names))[:5]
            self.warnings.warn(
                "state", f"dropped a state: {len(msg.position)} positions for {len(names)} names, missing {missing}"
            )
            return
        values = np.asarray(msg.position, np.float64)[index]
        if not np.isfinite(values).all():
            self.warnings.warn("state-nonfinite", "dropped a state with NaN or inf positions")
            return
        self.gate.state_received(stamp_ns(msg.header), values)
        self.try_act()

    def _index(self, names: tuple[str, ...]) -> np.ndarray | None:
        wanted = self.backend.state_names or names
        position = {name: i for i, name in enumerate(names)}
        if any(name not in position for name in wanted):
            return None
        return np.array([position[name] for name in wanted])

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

    def on_estop(self, msg: Bool) -> None:
        if not self.safety.set_estop(bool(msg.data)):
            return
        if msg.data:
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
        ready = self.gate.take(
            estop=self.safety.estop,
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
        verdict = self.safety.check(raw)
        if not verdict.ok:
            self.counts["refused"] += 1
            self.warnings.warn(verdict.reason, f"{verdict.message} [{self.counts['refused']} refused in all]")
            return
        if verdict.rate_limited:
            self.warnings.warn("rate", "policy output changed faster than max_delta: rate-limited")
        self.outputs.publish(
            verdict.command,
            header.stamp,
            step=self.gate.step,
            episode_id=self.gate.episode_id,
            source=self.backend.source,
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
        if tick.hold:
            self.warnings.warn("watchdog", f"no fresh observation for {tick.silence_s:.2g} s: holding the arm")
            self.hold("watchdog")

    def destroy_node(self) -> None:
        if getattr(self, "updates", None) is not None:
            self.updates.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin(PolicyController, args)


if __name__ == "__main__":
    raise SystemExit(main())
