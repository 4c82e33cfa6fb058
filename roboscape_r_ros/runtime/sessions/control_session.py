"""What policy_controller runs, in plain Python: its inputs kept, and each decision returned with its
reason, so that the node only converts messages, publishes and logs.

    session = ControlSession(params)             # RoboscapeError: a bad action spec, output or backend
    session.read_state(names, positions, stamp)  # the problems met, as (kind, message)
    decision = session.decide(clock_s)           # None, or publish / hold / refuse with the reason
    if decision.kind == "publish": ...; session.published(decision)

A decision runs the gate (runtime.gates.controller: e-stop, pause, the observation's state and goal),
the policy backend, the joint feedback a DELTA joint target needs, and the safety filter
(contract.safety); a policy that raises is refused like an unsafe command, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from roboscape_r_ros.contract.action_spec import MODE_DELTA
from roboscape_r_ros.contract.adapters import Pose
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.runtime.gates.adapter_config import startup_check
from roboscape_r_ros.runtime.gates.controller import NO_OBSERVATION_WARN_S, DecisionGate, PolicyControllerParams, Ready
from roboscape_r_ros.runtime.gates.feedback import ByName, Fresh, StateRejected
from roboscape_r_ros.runtime.gates.ood_guard import OodGate
from roboscape_r_ros.runtime.inference.policies import BackendOptions, PolicyInput, make_backend

if TYPE_CHECKING:
    from roboscape_r_ros.runtime.inference.learned_policy import LearnedPolicy

Problem = tuple[str, str]  # (kind, one-line message): the node warns once per kind and period


@dataclass(frozen=True)
class ControlDecision:
    kind: Literal["publish", "hold", "refuse"]
    problems: list[Problem] = field(default_factory=list)  # to warn about, whatever the kind
    reason: str = ""  # hold: why (the Action's source says hold:<reason>)
    command: np.ndarray | None = None  # publish: the safe command, in action units
    joints: np.ndarray | None = None  # publish: the fresh joint positions a DELTA joint target adds to
    payload: Any = None  # publish: what the node gave ``accept`` with the observation (its header, image)
    stamp: int = 0  # publish: the observation's stamp (ns)


@dataclass
class Watch:
    problems: list[Problem] = field(default_factory=list)  # throttled warnings
    log: list[str] = field(default_factory=list)  # warnings to log every time
    hold: str = ""  # hold the arm, for this reason
    episode_over: bool = False  # the out-of-domain guard ended the episode: ask for a new one


class ControlSession:
    def __init__(self, p: PolicyControllerParams) -> None:
        self.params = p
        self.spec, self.safety = startup_check(p)
        options = BackendOptions(
            spec=self.spec,
            task=p.task,
            seed=p.seed,
            checkpoint=p.checkpoint,
            device=p.device,
            sample=p.sample_actions or p.learning.enabled,
            runtime=p.runtime,
            threads=p.threads,
        )
        self.backend = make_backend(p.backend, options)
        self.updates = None
        if p.learning.enabled:
            from roboscape_r_ros.runtime.learner import BackgroundUpdates  # torch: only in learning mode

            self.updates = BackgroundUpdates.for_controller(self.backend, p.learning)
        self.goal: np.ndarray | None = None
        if p.goal_image_file:
            from roboscape_r_ros.imagination.goals import load_goal_image  # torch: only with a goal file

            try:
                self.goal = np.array(load_goal_image(p.goal_image_file, None))
            except RoboscapeError as err:
                raise RoboscapeError(f"goal_image_file: {err}") from None
        self.needs_goal = p.require_goal or self.backend.needs_goal
        self.gate = DecisionGate(p.stale_after_s, p.state_tolerance_s, self.backend.needs_state)
        self.backend_state = ByName(self.backend.state_names)
        self.joint_state = ByName(self.spec.names) if p.joint_state_feedback else None
        self.joints: Fresh[np.ndarray] = Fresh(p.stale_after_s)  # joint positions in action order
        self.ee_position: Fresh[np.ndarray] = Fresh(p.stale_after_s)  # for workspace limits
        self.needs_joints = p.publish_trajectory and self.spec.mode == MODE_DELTA
        guard = p.ood_guard
        self.ood_gate = OodGate(guard.threshold, guard.trip_after, guard.release_after, guard.hold_timeout_s)
        self.refused = 0

    # -- inputs ---------------------------------------------------------------------------------
    def read_state(self, names, positions, stamp: int) -> list[Problem]:
        """A JointState's positions by name: the backend's state and the arm's joint feedback."""
        problems: list[Problem] = []

        def read(by_name: ByName) -> np.ndarray | None:
            try:
                return by_name(names, positions)
            except StateRejected as err:
                problems.append((f"state-{err.reason}", f"dropped a state: {err}"))
                return None

        if self.backend.needs_state and (values := read(self.backend_state)) is not None:
            self.gate.state_received(stamp, values)
        if self.joint_state is not None and (values := read(self.joint_state)) is not None:
            self.joints.set(values, stamp)
        return problems

    def read_ee_pose(self, position, orientation, frame_id: str, stamp: int) -> tuple[Pose | None, Problem | None]:
        """The end effector's pose for cmd_pose (None when unusable), and what was wrong with it."""
        position, orientation = np.asarray(position, float), np.asarray(orientation, float)
        if not (np.isfinite(position).all() and np.isfinite(orientation).all()) or np.linalg.norm(orientation) < 1e-6:
            return None, ("ee_pose", "dropped an ee_pose with NaN/inf values or a zero quaternion")
        pose = Pose(position, orientation / np.linalg.norm(orientation))
        workspace = self.params.workspace
        if workspace.enabled and frame_id != workspace.frame_id:
            return pose, (
                "ee_pose-frame",
                f"ee_pose is in '{frame_id}', the workspace in '{workspace.frame_id}': not used for the limits",
            )
        self.ee_position.set(position, stamp)
        return pose, None

    def arrival(self, stamp: int, clock_s: float, now: float) -> tuple[str, Problem | None]:
        """An observation's kind (stale, repeat, fresh: DecisionGate.arrival) and, when stale, why."""
        arrival = self.gate.arrival(stamp, clock_s, now)
        if arrival.kind != "stale":
            return arrival.kind, None
        hint = " (are the producer and this node on the same clock? use_sim_time)" if arrival.clock_mismatch else ""
        message = (
            f"dropped a stale observation: its stamp is {arrival.age_s:.3g} s old "
            f"(limit {self.params.stale_after_s:g} s){hint}"
        )
        return "stale", ("stale-clock" if arrival.clock_mismatch else "stale", message)

    def watchdog(self, now: float, observation_topic: str) -> Watch:
        """What the periodic check found (``now``: monotonic s)."""
        tick, watch = self.gate.tick(now), Watch()
        if tick.dropped_waiting:
            wanted = "a state stamped like it" if self.backend.needs_state else "its inputs"
            watch.problems.append(
                (
                    "waiting",
                    f"dropped an observation without {wanted} within {self.params.stale_after_s:g} s: no command",
                )
            )
        if tick.never_observed:
            watch.log.append(
                f"no observation on {observation_topic} in {NO_OBSERVATION_WARN_S:g} s since start: no command; check "
                "that the camera publishes there, and that every process of the graph uses the same "
                "FASTDDS_BUILTIN_TRANSPORTS (a LARGE_DATA publisher and a default subscriber exchange no images)"
            )
        if tick.hold:
            watch.problems.append(("watchdog", f"no fresh observation for {tick.silence_s:.2g} s: holding the arm"))
            watch.hold = "watchdog"
        if self.ood_gate.tick(now):
            watch.log.append(
                f"out-of-domain guard: held for {self.params.ood_guard.hold_timeout_s:g} s: episode "
                f"{self.gate.episode_id or '(none heard)'} ended; the arm stays still until a new episode starts"
            )
            watch.episode_over = True
        return watch

    def new_episode(self, episode_id: str) -> Literal["same", "adopted", "new"]:
        change = self.gate.new_episode(episode_id)
        if change == "new":
            self.backend.reset(episode_id)
            self.safety.reset()
        return change

    # -- deciding -------------------------------------------------------------------------------
    def decide(self, clock_s: float) -> ControlDecision | None:
        """The pending observation's decision when it can be taken now (``clock_s``: the node's clock)."""
        ready = self.gate.take(
            estop=self.safety.stopped,
            paused=(self.updates is not None and self.updates.busy) or self.ood_gate.holding,
            goal_missing=self.needs_goal and self.goal is None,
        )
        if ready == "no-goal":
            message = "no goal image yet (goal_image is published transient local by the goal source): no command"
            return ControlDecision("refuse", [("goal", message)])
        if not isinstance(ready, Ready):
            return None
        payload = ready.pending.payload
        try:
            raw = self.backend.act(
                PolicyInput(image=payload[1], goal=self.goal, state=ready.state, step=self.gate.step)
            )
        except Exception as err:  # a policy bug must not take the arm's controller down
            self.refused += 1
            message = f"backend '{self.backend.name}' failed ({type(err).__name__}: {err}): no command"
            return ControlDecision("refuse", [("backend", message)])
        joints = self.joints.get(clock_s)
        if self.needs_joints and joints is None:
            message = "no fresh joint positions on state for a DELTA joint target: holding"
            return ControlDecision("hold", [("no-joint-state", message)], reason="no-joint-state")
        verdict = self.safety.check(raw, self.ee_position.get(clock_s))
        if not verdict.ok:
            self.refused += 1
            problem = (verdict.reason, f"{verdict.message} [{self.refused} refused in all]")
            return ControlDecision("hold" if verdict.hold else "refuse", [problem], reason=verdict.reason)
        problems = []
        if verdict.rate_limited:
            problems.append(("rate", "policy output changed faster than max_delta: rate-limited"))
        if verdict.clipped:
            problems.append(("workspace-clip", verdict.message))
        return ControlDecision(
            "publish", problems, command=verdict.command, joints=joints, payload=payload, stamp=ready.pending.stamp
        )

    def published(self, decision: ControlDecision) -> None:
        """The decision's command went out: the step counts, and learning keeps the transition."""
        self.gate.decided(decision.stamp)
        if self.updates is not None:
            sampled = cast("LearnedPolicy", self.backend).last_decision  # learning mode: the learned backend
            if sampled is not None:
                self.updates.learner.record(decision.stamp, self.gate.episode_id, sampled)

    def close(self) -> None:
        if self.updates is not None:
            self.updates.close()
