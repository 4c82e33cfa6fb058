"""policy_controller: observation (+ goal, + state when the backend needs it) in, one safe Action out.

Subscribes  observation  (sensor_msgs/Image, any camera_ingest encoding; sensor-data QoS)
            goal_image   (sensor_msgs/Image; reliable, transient local: a latched goal)
            state        (sensor_msgs/JointState by name; only read by backends that need it)
            ee_pose      (geometry_msgs/PoseStamped; only read for the PoseStamped adapter)
            estop        (std_msgs/Bool, reliable: true stops, false releases)
            episode      (std_msgs/String, transient local: a new id starts a new episode)
            reward       (roboscape_r_ros/Reward, reliable; only in learning mode)
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
training (``rl.ppo.ppo_update``) in a worker thread and saves ``<learning.output>/policy.safetensors``.
Meanwhile the controller holds (one hold, then no commands) and keeps serving e-stop and watchdog;
it resumes with the updated policy on the next fresh frame.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import PoseStamped, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, Header, MultiArrayDimension, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from roboscape_r_ros.config import load_config
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.msg import Action, Reward
from roboscape_r_ros.nodes.node_tools import (
    LATCHED,
    RELIABLE,
    RELIABLE_BACKLOG,
    Drops,
    StartupError,
    ThrottledWarnings,
    declare,
    spin,
    stamp_ns,
)
from roboscape_r_ros.runtime import adapters
from roboscape_r_ros.runtime.action_spec import MODE_ABSOLUTE, MODE_NAMES, ActionSpec
from roboscape_r_ros.runtime.policies import BackendOptions, PolicyInput, backend_names, make_backend
from roboscape_r_ros.runtime.safety import SafetyFilter, Watchdog, is_stale, stamp_age

MODES = {name: mode for mode, name in MODE_NAMES.items()}


class PolicyController(Node):
    def __init__(self) -> None:
        super().__init__("policy_controller")
        backend = declare(self, "backend", "random", f"policy backend: {', '.join(backend_names())}")
        task = declare(self, "task", "reach-v3", "Meta-World task of the expert backend")
        seed = declare(self, "seed", 0, "seed of stochastic backends", low=0, high=2**31 - 1)
        checkpoint = declare(
            self, "checkpoint", "", "learned backend: a policy .safetensors checkpoint (unused by expert and random)"
        )
        device = declare(self, "device", "cpu", "inference device of a learned backend")
        sample = declare(
            self,
            "sample_actions",
            False,
            "learned backend: draw actions from the policy's Gaussian instead of using its mean",
        )
        learning = declare(
            self,
            "learning.enabled",
            False,
            "learning mode: collect transitions and rewards over the topic loop and improve the learned policy "
            "with PPO",
        )
        rollout_steps = declare(
            self, "learning.rollout_steps", 128, "transitions per PPO update in learning mode", low=2, high=1_000_000
        )
        learning_output = declare(
            self,
            "learning.output",
            "outputs/learning",
            "folder of the updated policy.safetensors and updates.jsonl (learning mode)",
        )
        ppo_overrides = declare(
            self,
            "learning.ppo",
            "",
            "PPO settings for learning mode as space-separated key=value (rl/ppo.py PPOConfig), e.g. 'lr=1e-4 "
            "update_epochs=2'",
        )
        names = declare(
            self, "action_names", ["dx", "dy", "dz", "gripper"], "one name per action dimension (Action.names)"
        )
        units = declare(
            self, "action_units", ["m", "m", "m", "1"], "unit of each dimension's physical quantity (Action.units)"
        )
        scale = declare(
            self, "action_scale", [0.01, 0.01, 0.01, 1.0], "physical quantity per unit of value (Action.scale)"
        )
        lower = declare(
            self,
            "action_lower",
            [-1.0, -1.0, -1.0, -1.0],
            "lowest allowed value per dimension; below it nothing is published",
        )
        upper = declare(
            self,
            "action_upper",
            [1.0, 1.0, 1.0, 1.0],
            "highest allowed value per dimension; above it nothing is published",
        )
        max_delta = declare(
            self,
            "max_delta",
            [0.5, 0.5, 0.5, 2.0],
            "largest change of each value from one command to the next (rate limit)",
        )
        hold_last = declare(
            self,
            "hold_last",
            [False, False, False, True],
            "per dimension: a hold keeps the last value (e.g. a gripper) instead of 0",
        )
        mode = declare(self, "action_mode", "delta", "Action.mode: absolute, delta or velocity")
        period = declare(self, "control_period_s", 0.0125, "one control step; Action.duration (s)", low=1e-4, high=10.0)
        frame_id = declare(self, "frame_id", "world", "frame of the action values (Action.header.frame_id)")
        self.stale_after_s = declare(
            self,
            "stale_after_s",
            0.5,
            "observations older than this, or none for this long, hold the arm (s)",
            low=0.001,
            high=60.0,
        )
        self.state_tolerance_s = declare(
            self,
            "state_tolerance_s",
            0.02,
            "a state is used with an observation when their stamps differ by at most this (s)",
            low=0.0,
            high=10.0,
        )
        self.require_goal = declare(
            self,
            "require_goal",
            False,
            "publish nothing until a goal image arrived (always so for goal-conditioned backends)",
        )
        self.outputs = {
            name: declare(self, f"publish_{name}", False, f"also publish cmd_{name} ({kind})")
            for name, kind in (
                ("pose", "geometry_msgs/PoseStamped"),
                ("twist", "geometry_msgs/TwistStamped"),
                ("array", "std_msgs/Float64MultiArray"),
                ("trajectory", "trajectory_msgs/JointTrajectory"),
            )
        }
        self.joint_names = declare(
            self, "trajectory_joint_names", list(names), "joint_names of cmd_trajectory, one per action dimension"
        )
        throttle_s = declare(
            self,
            "warning_period_s",
            5.0,
            "at most one warning per kind of problem in this period (s)",
            low=0.0,
            high=3600.0,
        )

        if mode not in MODES:
            raise StartupError(f"policy_controller: action_mode '{mode}' is not one of {', '.join(MODES)}")
        try:
            self.spec = ActionSpec(
                tuple(names),
                tuple(units),
                tuple(scale),
                tuple(lower),
                tuple(upper),
                MODES[mode],
                period,
                frame_id,
                tuple(hold_last),
            )
            self.safety = SafetyFilter(self.spec, max_delta)
            self.watchdog = Watchdog(self.stale_after_s)
            self.backend = make_backend(
                backend, BackendOptions(self.spec, task, seed, checkpoint, device, sample or learning)
            )
            self.learner = self._learner(rollout_steps, learning_output, ppo_overrides) if learning else None
        except RoboscapeError as err:
            raise StartupError(f"policy_controller: {err}") from None
        if len(self.joint_names) != self.spec.dim:
            raise StartupError(
                f"policy_controller: trajectory_joint_names has {len(self.joint_names)} names, the action "
                f"{self.spec.dim}"
            )
        for output, enabled in self.outputs.items():
            why = adapters.supported(self.spec, output) if enabled else None
            if why:
                raise StartupError(f"policy_controller: publish_{output}: {why}")
        self.needs_goal = self.require_goal or self.backend.needs_goal
        self.hold_outputs = adapters.hold_outputs(self.spec)

        self.warnings = ThrottledWarnings(self, throttle_s)
        self.drops = Drops(self.warnings, "no command for it")
        self.episode_id = ""
        self.step = 0
        self.answered: int | None = None  # stamp (ns) of the last observation answered
        self.pending: tuple[Header, np.ndarray, float] | None = None  # waiting for its state
        self.state: tuple[int, np.ndarray] | None = None
        self.state_index: dict[tuple[str, ...], np.ndarray | None] = {}
        self.goal: np.ndarray | None = None
        self.ee_pose: adapters.Pose | None = None
        self.moving = False  # a non-hold command went out since the last hold
        self.last_action: Action | None = None  # sent again when its frame is seen again
        self.counts = {"published": 0, "refused": 0, "holds": 0}
        self.update_job: Future | None = None  # the PPO update running in the worker thread
        self.update_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ppo") if self.learner else None

        self.action_pub = self.create_publisher(Action, "action", RELIABLE)
        self.adapter_pubs = {
            name: self.create_publisher(kind, f"cmd_{name}", RELIABLE)
            for name, kind in (
                ("pose", PoseStamped),
                ("twist", TwistStamped),
                ("array", Float64MultiArray),
                ("trajectory", JointTrajectory),
            )
            if self.outputs[name]
        }
        self.create_subscription(Image, "observation", self.on_observation, qos_profile_sensor_data)
        self.create_subscription(Image, "goal_image", self.on_goal, LATCHED)
        if self.backend.needs_state:
            self.create_subscription(JointState, "state", self.on_state, qos_profile_sensor_data)
        if self.outputs["pose"]:
            self.create_subscription(PoseStamped, "ee_pose", self.on_ee_pose, qos_profile_sensor_data)
        self.create_subscription(Bool, "estop", self.on_estop, RELIABLE)
        self.create_subscription(String, "episode", self.on_episode, LATCHED)
        if self.learner is not None:
            self.create_subscription(Reward, "reward", self.on_reward, RELIABLE_BACKLOG)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(min(self.stale_after_s / 4, 0.05), self.on_watchdog, clock=steady)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        adapters_on = ", ".join(f"cmd_{n}" for n in self.adapter_pubs) or "none"
        self.get_logger().info(
            f"backend '{backend}' ({', '.join(names)} in {mode} mode, {period * 1e3:g} ms per step); adapters: "
            f"{adapters_on}; "
            f"holding after {self.stale_after_s:g} s without fresh observations"
        )
        if self.learner is not None:
            self.get_logger().info(
                f"learning mode: sampled actions, a PPO update every {self.learner.cfg.num_steps} transitions, "
                f"policy saved to {self.learner.checkpoint}"
            )

    def _learner(self, rollout_steps: int, output: str, ppo_overrides: str):
        from roboscape_r_ros.rl.ppo import PPOConfig  # torch: only in learning mode
        from roboscape_r_ros.runtime.learner import Learner, LearnerError

        if self.backend.name != "learned":
            raise LearnerError(
                f"learning mode trains the learned backend (backend:=learned), not '{self.backend.name}'"
            )
        cfg = load_config(PPOConfig, "ppo", None, [*ppo_overrides.split(), f"num_steps={rollout_steps}"])
        return Learner(self.backend.policy, cfg, output)

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
    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_observation(self, msg: Image) -> None:
        stamp = stamp_ns(msg.header)
        now = self.now_s()
        age = stamp_age(now, stamp * 1e-9)
        if is_stale(now, stamp * 1e-9, self.stale_after_s):
            clock_mismatch = age > 3600  # a zero stamp, or sim time against wall time
            hint = " (are the producer and this node on the same clock? use_sim_time)" if clock_mismatch else ""
            self.warnings.warn(
                "stale-clock" if clock_mismatch else "stale",
                f"dropped a stale observation: its stamp is {age:.3g} s old (limit {self.stale_after_s:g} s){hint}",
            )
            return
        if stamp == self.answered and self.moving:
            # The same frame again (a simulator waiting for its action): the source is alive; send
            # the same Action again in case the first was lost (a driver steps once per frame).
            # After a hold it is decided afresh below: a simulator that waited through the hold
            # sends only this frame, and would otherwise wait for good.
            self.watchdog.feed(time.monotonic())
            if self.last_action is not None and not self.safety.estop:
                self.action_pub.publish(self.last_action)
            return
        image = self.drops.decode(msg, "an observation")
        if image is None:
            return
        if self.watchdog.expired(time.monotonic()):
            self.get_logger().info("fresh observations again: resuming")
        self.watchdog.feed(time.monotonic())
        self.pending = (msg.header, image, time.monotonic())
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
        self.state = (stamp_ns(msg.header), values)
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
        self.ee_pose = adapters.Pose(position, orientation / np.linalg.norm(orientation))

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
        if msg.data == self.episode_id:
            return
        if not self.episode_id:
            # The first id heard names the episode already running (its first frames may have been
            # answered before this latched message arrived): adopt it, keep counting.
            self.episode_id = msg.data
            self.get_logger().info(f"episode {msg.data}")
            return
        # Forget which frame was answered: when the first frame of the new episode overtook this
        # message, it was answered with the old id (and refused); its republish is answered again.
        self.episode_id, self.step, self.pending, self.answered = msg.data, 0, None, None
        self.backend.reset(msg.data)
        self.safety.reset()
        self.get_logger().info(f"episode {msg.data}")

    def on_reward(self, msg: Reward) -> None:
        self.learner.reward(stamp_ns(msg.header), msg.episode_id, msg.reward, msg.done, msg.truncated)
        self.maybe_update()

    # -- learning -------------------------------------------------------------------------------
    def maybe_update(self) -> None:
        """Start a PPO update in the worker thread once a rollout is complete; hold meanwhile."""
        if self.update_job is not None or not self.learner.ready():
            return
        buffer = self.learner.take_rollout()
        self.hold("learning")
        self.get_logger().info(
            f"learning: PPO update {self.learner.counts['updates'] + 1} on {buffer.size} transitions; holding "
            "the arm (no commands) until it is done"
        )
        self.update_job = self.update_pool.submit(self.learner.update, buffer)

    def check_update(self) -> None:
        if self.update_job is None or not self.update_job.done():
            return
        job, self.update_job = self.update_job, None
        try:
            stats = job.result()
        except Exception as err:  # a failed update must not take the arm's controller down
            self.get_logger().error(
                f"learning: the PPO update failed ({type(err).__name__}: {err}); acting on with the policy as it is"
            )
            return
        counts = self.learner.counts
        self.get_logger().info(
            f"learning: update {stats['update']:.0f} done in {stats['update_s']:.2f} s (mean reward "
            f"{stats['rollout/reward']:.3g}, "
            f"policy loss {stats['loss/policy']:.3g}, value loss {stats['loss/value']:.3g}); saved "
            f"{self.learner.checkpoint}; "
            f"{counts['unmatched']} rewards matched no transition, {counts['dropped']} transitions without "
            "reward; resuming"
        )
        self.maybe_update()

    # -- acting ---------------------------------------------------------------------------------
    def try_act(self) -> None:
        if self.pending is None or self.safety.estop:
            return
        if self.update_job is not None:
            self.pending = None  # holding while the policy is updated
            return
        header, image, _ = self.pending
        state = None
        if self.backend.needs_state:
            if self.state is None or abs(self.state[0] - stamp_ns(header)) > self.state_tolerance_s * 1e9:
                return  # wait for the state of this frame (the watchdog gives up on it)
            state = self.state[1]
        if self.needs_goal and self.goal is None:
            self.warnings.warn(
                "goal", "no goal image yet (goal_image is published transient local by the goal source): no command"
            )
            self.pending = None
            return
        self.pending = None
        try:
            raw = self.backend.act(PolicyInput(image=image, goal=self.goal, state=state, step=self.step))
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
        self.publish(verdict.command, header.stamp, self.backend.source)
        self.answered = stamp_ns(header)
        self.moving = True
        self.step += 1
        if self.learner is not None and self.backend.last_decision is not None:
            self.learner.record(self.answered, self.episode_id, self.backend.last_decision)
            self.maybe_update()

    def hold(self, why: str) -> None:
        """Once: zero motion on the rate outputs, the current pose on cmd_pose (adapters.hold_outputs);
        then silence until fresh observations (or the e-stop's release)."""
        command = self.safety.hold()
        if self.moving:
            self.publish(command, self.get_clock().now().to_msg(), f"hold:{why}", hold=True)
            self.counts["holds"] += 1
        self.moving = False

    def on_watchdog(self) -> None:
        if self.learner is not None:
            self.check_update()
        now = time.monotonic()
        if self.pending is not None and now - self.pending[2] > self.stale_after_s:
            wanted = "a state stamped like it" if self.backend.needs_state else "its inputs"
            self.warnings.warn(
                "waiting", f"dropped an observation without {wanted} within {self.stale_after_s:g} s: no command"
            )
            self.pending = None
        if self.moving and self.watchdog.expired(now):
            self.warnings.warn("watchdog", f"no fresh observation for {self.watchdog.age(now):.2g} s: holding the arm")
            self.hold("watchdog")

    # -- output ---------------------------------------------------------------------------------
    def publish(self, values: np.ndarray, stamp, source: str, hold: bool = False) -> None:
        spec = self.spec
        header = Header(stamp=stamp, frame_id=spec.frame_id)
        period = Duration(sec=int(spec.period_s), nanosec=int(round((spec.period_s % 1) * 1e9)))
        outputs = self.hold_outputs if hold else None  # None: every output
        if outputs is None or "action" in outputs:
            action = Action(
                header=header,
                names=list(spec.names),
                units=list(spec.units),
                values=values.tolist(),
                scale=list(spec.scale),
                lower=list(spec.lower),
                upper=list(spec.upper),
                mode=spec.mode,
                duration=period,
                step=self.step,
                episode_id=self.episode_id,
                source=source,
            )
            self.action_pub.publish(action)
            self.last_action = None if hold else action
            self.counts["published"] += 1
        if outputs is not None:
            if "pose" in self.adapter_pubs and self.ee_pose is not None:
                self._publish_pose(header, self.ee_pose)  # hold: stay where the hand is
            adapter_names = outputs - {"pose", "action"}
        else:
            adapter_names = set(self.adapter_pubs)
        if "twist" in self.adapter_pubs and "twist" in adapter_names:
            linear, angular = adapters.twist(spec, values)
            msg = TwistStamped(header=header)
            msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = linear.tolist()
            msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = angular.tolist()
            self.adapter_pubs["twist"].publish(msg)
        if "pose" in self.adapter_pubs and "pose" in adapter_names:
            if self.ee_pose is None and spec.mode != MODE_ABSOLUTE:
                self.warnings.warn("no-ee-pose", "cmd_pose needs the current pose on ee_pose: not published")
            else:
                self._publish_pose(header, adapters.pose_target(spec, values, self.ee_pose))
        if "array" in self.adapter_pubs and "array" in adapter_names:
            msg = Float64MultiArray(data=adapters.array(spec, values).tolist())
            msg.layout.dim = [MultiArrayDimension(label=",".join(spec.names), size=spec.dim, stride=spec.dim)]
            self.adapter_pubs["array"].publish(msg)
        if "trajectory" in self.adapter_pubs and "trajectory" in adapter_names:
            point = adapters.trajectory_point(spec, values)
            # A zero stamp means "start now" to ros2_control's joint_trajectory_controller; the
            # observation's stamp would put the point in the past.
            msg = JointTrajectory(header=Header(frame_id=spec.frame_id), joint_names=list(self.joint_names))
            msg.points = [
                JointTrajectoryPoint(
                    positions=point["positions"], velocities=point["velocities"], time_from_start=period
                )
            ]
            self.adapter_pubs["trajectory"].publish(msg)

    def destroy_node(self) -> None:
        if getattr(self, "update_pool", None) is not None:
            self.update_pool.shutdown(wait=True)  # an update in flight finishes and saves its checkpoint
        super().destroy_node()

    def _publish_pose(self, header: Header, target: adapters.Pose) -> None:
        msg = PoseStamped(header=header)
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = target.position.tolist()
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = target.orientation.tolist()
        self.adapter_pubs["pose"].publish(msg)


def main(args: list[str] | None = None) -> int:
    return spin(PolicyController, args)


if __name__ == "__main__":
    raise SystemExit(main())
