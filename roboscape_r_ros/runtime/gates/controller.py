"""policy_controller in plain Python: its parameters and the gate that says when it decides.

The gate sequences the inputs of one controller (no ROS, no policy, no safety rules: those are
``runtime.inference.policies`` and ``contract.safety``):

- an observation is *stale* (older than ``stale_after_s`` on the node's clock; dropped), a *repeat*
  (the frame answered last, seen again while the arm moves: a simulator waiting for its action
  re-sends it; the same Action goes out again) or *fresh* (it waits as the pending observation);
- a pending observation is decided once its state (stamped within ``state_tolerance_s``) and goal
  are there, and dropped when neither e-stop nor the wait ends within ``stale_after_s``;
- the first episode id heard names the episode already running (adopted, steps keep counting); a
  later new id resets the step count and forgets the frame answered last (the first frame of the
  new episode may have overtaken the id and been answered under the old one: it is answered again);
- the watchdog: no fresh observation for ``stale_after_s`` while moving -> hold, once.
After a hold the next frame, even the one answered last, is decided afresh: a simulator that waited
through the hold sends only that frame, and would otherwise wait for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from roboscape_r_ros.contract.action_spec import MODE_NAMES, ActionSpec, metaworld_action_spec
from roboscape_r_ros.contract.controller_rules import TrajectoryController
from roboscape_r_ros.contract.safety import Watchdog, WorkspaceLimits, is_stale, stamp_age
from roboscape_r_ros.parameters import parameter, threads_parameter
from roboscape_r_ros.runtime import DEFAULT_TASK
from roboscape_r_ros.runtime.gates.ood_guard import OodGuardParams

_SAWYER = metaworld_action_spec()


@dataclass(frozen=True)
class LearningParams:
    enabled: bool = parameter(
        False,
        "learning mode: collect transitions and rewards over the topic loop and improve the learned policy with PPO",
    )
    rollout_steps: int = parameter(128, "transitions per PPO update in learning mode", low=2, high=1_000_000)
    output: str = parameter(
        "outputs/learning", "folder of the updated policy.safetensors and updates.jsonl (learning mode)"
    )
    ppo: str = parameter(
        "",
        "PPO settings for learning mode as space-separated key=value (rl/ppo.py PPOConfig), e.g. 'lr=1e-4 "
        "update_epochs=2'",
    )


@dataclass(frozen=True)
class PolicyControllerParams:
    backend: str = parameter("random", "policy backend (runtime/inference/policies.py): expert, random or learned")
    task: str = parameter(DEFAULT_TASK, "Meta-World task of the expert backend")
    seed: int = parameter(0, "seed of stochastic backends", low=0, high=2**31 - 1)
    checkpoint: str = parameter(
        "", "learned backend: a policy .safetensors checkpoint or its .onnx export (unused by expert and random)"
    )
    device: str = parameter("cpu", "inference device of a learned backend")
    threads: int = threads_parameter()
    runtime: Literal["torch", "onnx", "auto"] = parameter(
        "auto", "learned backend's inference runtime: torch, onnx (ONNX Runtime) or auto (by the checkpoint's suffix)"
    )
    reload_check_s: float = parameter(
        0.0,
        "learned backend: seconds between checks of the checkpoint file for a replaced policy, swapped in "
        "between two decisions (0: only on the reload_policy service)",
        low=0.0,
        high=3600.0,
    )
    sample_actions: bool = parameter(
        False, "learned backend: draw actions from the policy's Gaussian instead of using its mean"
    )
    learning: LearningParams = LearningParams()
    ood_guard: OodGuardParams = OodGuardParams()
    action_names: tuple[str, ...] = parameter(_SAWYER.names, "one name per action dimension (Action.names)")
    action_units: tuple[str, ...] = parameter(
        _SAWYER.units, "unit of each dimension's physical quantity (Action.units)"
    )
    action_scale: tuple[float, ...] = parameter(_SAWYER.scale, "physical quantity per unit of value (Action.scale)")
    action_mode: Literal["absolute", "delta", "velocity"] = parameter("delta", "Action.mode")
    control_period_s: float = parameter(_SAWYER.period_s, "one control step; Action.duration (s)", low=1e-4, high=10.0)
    frame_id: str = parameter(_SAWYER.frame_id, "frame of the action values (Action.header.frame_id)")
    action_lower: tuple[float, ...] = parameter(
        _SAWYER.lower, "lowest allowed value per dimension; below it nothing is published"
    )
    action_upper: tuple[float, ...] = parameter(
        _SAWYER.upper, "highest allowed value per dimension; above it nothing is published"
    )
    max_delta: tuple[float, ...] = parameter(
        (0.5, 0.5, 0.5, 2.0), "largest change of each value from one command to the next (rate limit)"
    )
    hold_last: tuple[bool, ...] = parameter(
        _SAWYER.hold_last, "per dimension: a hold keeps the last value (e.g. a gripper) instead of 0"
    )
    stale_after_s: float = parameter(
        0.5, "observations older than this, or none for this long, hold the arm (s)", low=0.001, high=60.0
    )
    state_tolerance_s: float = parameter(
        0.02, "a state is used with an observation when their stamps differ by at most this (s)", low=0.0, high=10.0
    )
    require_goal: bool = parameter(
        False, "publish nothing until a goal image arrived (always so for goal-conditioned backends)"
    )
    goal_image_file: str = parameter(
        "",
        "a goal image (8-bit RGB PNG/JPEG, square, the observation's size) used from the start until a "
        "goal_image message replaces it (empty: only goal_image)",
    )
    publish_pose: bool = parameter(False, "also publish cmd_pose (geometry_msgs/PoseStamped)")
    publish_twist: bool = parameter(False, "also publish cmd_twist (geometry_msgs/TwistStamped)")
    publish_array: bool = parameter(False, "also publish cmd_array (std_msgs/Float64MultiArray)")
    publish_trajectory: bool = parameter(
        False, "also publish cmd_trajectory (trajectory_msgs/JointTrajectory; joint-space actions)"
    )
    trajectory_controller: TrajectoryController = TrajectoryController()
    joint_state_feedback: bool = parameter(
        False, "read the arm's joint positions by name from state (sensor_msgs/JointState); DELTA joint targets need it"
    )
    workspace: WorkspaceLimits = WorkspaceLimits()
    warning_period_s: float = parameter(
        5.0, "at most one warning per kind of problem in this period (s)", low=0.0, high=3600.0
    )

    def action_spec(self) -> ActionSpec:
        modes = {name: mode for mode, name in MODE_NAMES.items()}
        return ActionSpec(
            self.action_names,
            self.action_units,
            self.action_scale,
            self.action_lower,
            self.action_upper,
            modes[self.action_mode],
            self.control_period_s,
            self.frame_id,
            self.hold_last,
        )

    @property
    def outputs(self) -> dict[str, bool]:
        """Adapter output name -> enabled."""
        return {
            "pose": self.publish_pose,
            "twist": self.publish_twist,
            "array": self.publish_array,
            "trajectory": self.publish_trajectory,
        }


@dataclass(frozen=True)
class Arrival:
    kind: Literal["stale", "repeat", "fresh"]
    age_s: float = 0.0  # stale: the stamp's age on the node's clock
    clock_mismatch: bool = False  # stale by more than an hour: a zero stamp, or sim time against wall time


@dataclass(frozen=True)
class Pending:
    stamp: int  # ns
    payload: Any  # what the node decides on (its header and image)
    received: float  # monotonic s


@dataclass(frozen=True)
class Ready:
    pending: Pending
    state: np.ndarray | None  # the state stamped like it, when the backend reads one


# A controller that never hears its camera used to log nothing (once seen silent for 60 s after a
# restart): the first tick this long after start without any observation says so, once.
NO_OBSERVATION_WARN_S = 10.0


@dataclass(frozen=True)
class Tick:
    dropped_waiting: bool = False  # a pending observation waited too long for its state or goal
    hold: bool = False  # the watchdog expired while moving: hold the arm
    silence_s: float = 0.0  # how long without a fresh observation
    never_observed: bool = False  # NO_OBSERVATION_WARN_S since the first tick without any observation (once)


class DecisionGate:
    def __init__(self, stale_after_s: float, state_tolerance_s: float, needs_state: bool) -> None:
        self.stale_after_s, self.state_tolerance_s, self.needs_state = stale_after_s, state_tolerance_s, needs_state
        self.watchdog = Watchdog(stale_after_s)
        self.episode_id = ""
        self.step = 0  # decisions in this episode
        self.answered: int | None = None  # stamp (ns) of the observation answered last
        self.moving = False  # a decision went out since the last hold
        self.pending: Pending | None = None
        self.state: tuple[int, np.ndarray] | None = None  # (stamp ns, values)
        self.first_tick: float | None = None  # monotonic s
        self.reported_no_observation = False

    def arrival(self, stamp: int, clock_s: float, now: float) -> Arrival:
        """Sort an observation stamped ``stamp`` arriving at ``clock_s`` (node clock) / ``now`` (monotonic)."""
        if is_stale(clock_s, stamp * 1e-9, self.stale_after_s):
            age = stamp_age(clock_s, stamp * 1e-9)
            return Arrival("stale", age, age > 3600)
        if stamp == self.answered and self.moving:
            self.watchdog.feed(now)  # the source is alive
            return Arrival("repeat")
        return Arrival("fresh")

    def accept(self, stamp: int, payload: Any, now: float) -> bool:
        """A fresh observation (decoded) waits to be decided; True when it ends a watchdog silence."""
        resumed = self.watchdog.expired(now)
        self.watchdog.feed(now)
        self.pending = Pending(stamp, payload, now)
        return resumed

    def state_received(self, stamp: int, values: np.ndarray) -> None:
        self.state = (stamp, values)

    def take(self, *, estop: bool, paused: bool, goal_missing: bool) -> Ready | Literal["no-goal"] | None:
        """The pending observation when it can be decided now; "no-goal" when it is dropped for want of
        a goal; None when there is nothing to decide or it waits (e-stop, its state). ``paused``: the
        arm holds (a policy update, the out-of-domain guard) and observations are dropped meanwhile."""
        if self.pending is None or estop:
            return None
        if paused:
            self.pending = None
            return None
        state = None
        if self.needs_state:
            if self.state is None or abs(self.state[0] - self.pending.stamp) > self.state_tolerance_s * 1e9:
                return None  # its state may still come (tick gives up on it)
            state = self.state[1]
        pending, self.pending = self.pending, None
        if goal_missing:
            return "no-goal"
        return Ready(pending, state)

    def decided(self, stamp: int) -> None:
        """A command answering the observation stamped ``stamp`` went out."""
        self.answered, self.moving = stamp, True
        self.step += 1

    def hold(self) -> bool:
        """The arm holds; True when it was moving (the hold command is then published, once)."""
        was_moving, self.moving = self.moving, False
        return was_moving

    def tick(self, now: float) -> Tick:
        dropped = self.pending is not None and now - self.pending.received > self.stale_after_s
        if dropped:
            self.pending = None
        self.first_tick = now if self.first_tick is None else self.first_tick
        never_observed = (
            self.watchdog.last_feed is None
            and not self.reported_no_observation
            and now - self.first_tick > NO_OBSERVATION_WARN_S
        )
        self.reported_no_observation |= never_observed
        return Tick(dropped, self.moving and self.watchdog.expired(now), self.watchdog.age(now), never_observed)

    def new_episode(self, episode_id: str) -> Literal["same", "adopted", "new"]:
        if episode_id == self.episode_id:
            return "same"
        adopted = not self.episode_id
        self.episode_id = episode_id
        if adopted:
            return "adopted"
        self.step, self.pending, self.answered = 0, None, None
        return "new"
