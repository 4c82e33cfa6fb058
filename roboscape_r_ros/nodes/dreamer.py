"""dreamer: the learned world model as the environment (imagine) or as a live monitor (shadow).

Topics, services and behaviour: docs/nodes.md#dreamer.
"""

from __future__ import annotations

import time

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, Header, String
from std_srvs.srv import Trigger

from roboscape_r_ros.contract.action_spec import CommandRejected, check_command
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.msg import Action, Reward
from roboscape_r_ros.nodes.messaging import LATCHED, RELIABLE, publish_estop_released, rgb8_image, stamp_ns
from roboscape_r_ros.nodes.node_tools import (
    Drops,
    StartupError,
    ThrottledWarnings,
    declare_parameters,
    limit_threads,
    serve_reload,
    spin,
)
from roboscape_r_ros.runtime.gates.step_gate import StepGate
from roboscape_r_ros.runtime.sessions.dream_session import (
    ContextPool,
    DreamerParams,
    DreamError,
    DreamFrame,
    DreamSession,
    ShadowMonitor,
    describe,
    load_replacement,
    load_world_model,
    side_by_side,
)


class Dreamer(Node):
    """Parameters, the world model, the checks every mode shares; the mode's own topics live in
    ``Imagining`` or ``Shadowing``."""

    def __init__(self) -> None:
        super().__init__("dreamer")
        self.params = p = declare_parameters(self, DreamerParams)
        limit_threads(p.threads)
        if not p.world_model:
            raise StartupError("dreamer: no world model given: set world_model (a train-wm run folder or .safetensors)")
        try:
            self.wm, run = load_world_model(p.world_model, p.device, p.runtime, p.threads)
            self.spec = p.action_spec(self.wm.cfg.action_dim, run.checkpoint)
            self.mode = Imagining(self, run) if p.mode == "imagine" else Shadowing(self)
        except RoboscapeError as err:
            raise StartupError(f"dreamer: {err}") from None
        self.size = self.wm.cfg.image_size
        self.warnings = ThrottledWarnings(self, p.warning_period_s)
        self.drops = Drops(self.warnings, "nothing changes")
        self.refused = 0
        self.goal: np.ndarray | None = None
        self.image_pub = self.create_publisher(Image, "dream/image", qos_profile_sensor_data)
        self.create_subscription(Image, "goal_image", self.on_goal, LATCHED)
        self.create_subscription(Action, "action", self.mode.on_action, RELIABLE)
        self.create_service(Trigger, "dream/reset", self.on_reset)  # sim_bridge offers "reset"
        serve_reload(self, "reload_world_model", str(run.checkpoint), p.reload_check_s, self.reload)
        self.mode.start()
        self.get_logger().info(
            f"{p.mode}: world model {run.checkpoint} ({self.size}x{self.size}, {self.wm.cfg.action_dim}-D actions, "
            f"frame_skip {self.wm.cfg.frame_skip}, {describe(self.wm)}); {self.mode.describe()}"
        )

    def on_goal(self, msg: Image) -> None:
        goal = self.drops.decode(msg, "a goal image")
        if goal is not None:
            self.goal = goal

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.message = self.mode.reset()
        self.get_logger().info(f"reset: {response.message}")
        response.success = True
        return response

    def reload(self) -> str:
        """The checkpoint at world_model, checked now and handed to the mode (which swaps it in when it may)."""
        p = self.params
        wm, run = load_replacement(self.wm, p.world_model, p.device, p.runtime, p.threads)
        return self.mode.replace(wm, run.checkpoint)

    def check(self, msg: Action) -> np.ndarray | None:
        """The Action's values when it fits the expected spec, else None after a warning."""
        try:
            return check_command(
                self.spec, names=msg.names, units=msg.units, values=msg.values, scale=msg.scale, mode=msg.mode
            )
        except CommandRejected as err:
            self.refuse(err.reason, str(err))
            return None

    def refuse(self, reason: str, message: str) -> None:
        self.refused += 1
        self.warnings.warn(reason, f"refused an action: {message}; no step [{self.refused} refused in all]")

    def panels(self, real: np.ndarray | None, dream: np.ndarray | None, header: Header) -> None:
        self.image_pub.publish(rgb8_image(side_by_side(self.size, real, dream, self.goal), header))


class Imagining:
    """Mode imagine: a DreamSession stepped by the actions that StepGate admits."""

    def __init__(self, node: Dreamer, run) -> None:
        p = node.params
        contexts = ContextPool(
            node.wm, run, dataset=p.dataset, episodes=p.context_episodes, context_frames=p.context_frames, seed=p.seed
        )
        self.node, self.params, self.contexts = node, p, contexts
        self.session = DreamSession(node.wm, contexts, max_steps=p.max_steps, done_threshold=p.done_threshold)
        self.gate = StepGate()

    def start(self) -> None:
        node = self.node
        self.observation_pub = node.create_publisher(Image, "observation", qos_profile_sensor_data)
        self.done_pub = node.create_publisher(Reward, "done", RELIABLE)
        self.episode_pub = node.create_publisher(String, "episode", LATCHED)
        publish_estop_released(node)  # the dreamed arm's e-stop, never engaged (not in shadow mode: a real arm's)
        self.last_publish = time.monotonic()
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        node.create_timer(min(self.params.republish_period_s, 0.1), self.on_timer, clock=steady)
        self.start_episode()

    def describe(self) -> str:
        return f"{len(self.contexts.episodes)} context episodes, episodes of at most {self.params.max_steps} steps"

    def reset(self) -> str:
        return self.start_episode().episode_id

    def replace(self, wm, source) -> str:
        self.session.pending, self.source = wm, source
        return f"world model {source} loaded: it replaces the running one at the next episode reset"

    def start_episode(self) -> DreamFrame:
        swapping = self.session.pending is not None
        frame = self.session.reset()
        if swapping:
            self.node.wm = self.session.wm
            self.node.get_logger().info(f"world model {self.source} swapped in at episode {frame.episode_id}")
        self.gate.new_episode(frame.episode_id)
        self.episode_pub.publish(String(data=frame.episode_id))
        self.publish_frame(frame)
        return frame

    def on_action(self, msg: Action) -> None:
        admission = self.gate.admit(stamp_ns(msg.header), msg.episode_id, self.session.current.ended)
        if admission.verdict == "refuse":
            self.node.refuse(admission.reason, admission.message)
        if admission.verdict != "step" or (values := self.node.check(msg)) is None:
            return
        frame = self.session.step(values)
        self.gate.moved_on()
        self.publish_frame(frame)
        if frame.ended:
            outcome = "truncated" if frame.truncated else f"done (p={frame.done_probability:.2f})"
            self.node.get_logger().info(f"episode {frame.episode_id} ended after {frame.step} steps: {outcome}")
            if self.params.auto_reset:
                self.start_episode()

    def publish_frame(self, frame: DreamFrame) -> None:
        header = Header(stamp=self.node.get_clock().now().to_msg(), frame_id=self.params.frame_id)
        self.gate.published(stamp_ns(header))
        self.done_pub.publish(
            Reward(
                header=header,
                done_probability=frame.done_probability,
                done=frame.ended,
                truncated=frame.truncated,
                step=frame.step,
                episode_id=frame.episode_id,
                instruction=frame.context.instruction,
            )
        )
        self.observation_pub.publish(rgb8_image(frame.image, header))
        self.node.panels(frame.context.frames[-1], frame.image, header)
        self.last_publish = time.monotonic()

    def on_timer(self) -> None:
        if time.monotonic() - self.last_publish >= self.params.republish_period_s:
            self.publish_frame(self.session.current)


class Shadowing:
    """Mode shadow: a ShadowMonitor fed the real frames and the actions that answer them."""

    def __init__(self, node: Dreamer) -> None:
        self.node, self.monitor = node, ShadowMonitor(node.wm)

    def start(self) -> None:
        node = self.node
        self.prediction_pub = node.create_publisher(Image, "dream/prediction", qos_profile_sensor_data)
        self.error_pub = node.create_publisher(Float32, "dream/error", RELIABLE)
        node.create_subscription(Image, "observation", self.on_observation, qos_profile_sensor_data)

    def describe(self) -> str:
        return "publishing dream/prediction and dream/error"

    def reset(self) -> str:
        self.monitor.reset()
        return "shadow context cleared"

    def replace(self, wm, source) -> str:
        self.monitor.replace(wm)
        self.node.wm = wm
        return f"world model {source} swapped in (shadow: at once, from a fresh context)"

    def on_action(self, msg: Action) -> None:
        values = self.node.check(msg)
        if values is None:
            return
        prediction = self.monitor.act(stamp_ns(msg.header), values)
        if prediction is not None:
            header = Header(stamp=msg.header.stamp, frame_id=self.node.params.frame_id)
            self.prediction_pub.publish(rgb8_image(prediction, header))

    def on_observation(self, msg: Image) -> None:
        image = self.node.drops.decode(msg, "an observation")
        if image is None:
            return
        try:
            result = self.monitor.observe(stamp_ns(msg.header), image)
        except DreamError as err:
            self.node.drops("observation-size", f"an observation: {err}")
            return
        if result is not None:
            self.error_pub.publish(Float32(data=result.mse))
            self.node.panels(result.real, result.prediction, msg.header)


def main(args: list[str] | None = None) -> int:
    return spin(Dreamer, args)


if __name__ == "__main__":
    raise SystemExit(main())
