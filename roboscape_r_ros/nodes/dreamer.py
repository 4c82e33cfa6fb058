"""dreamer: the learned world model as the environment (imagine) or as a live monitor (shadow).

mode imagine (the environment of imagination training; sim_bridge's place in the loop)
  Subscribes  action       (roboscape_r_ros/Action, reliable): one world-model step per valid action
  Publishes   observation  (sensor_msgs/Image rgb8 at the model's size, sensor-data QoS)
              done         (roboscape_r_ros/Reward, reliable): the step's outcome, stamped like its
                           observation: done_probability, done (imagined success or step cap),
                           truncated, step, episode_id, instruction (of the context episode); the
                           reward terms stay 0: reward_publisher fills them (it pairs by stamp)
              episode      (std_msgs/String, transient local: the episode id; a new value = a reset)
  Service     reset        (std_srvs/Trigger): a new episode from a new context; the message is its id
mode shadow (beside a real or simulated robot)
  Subscribes  observation  (sensor_msgs/Image, any camera_ingest encoding, at the model's size) and
              action       (the commands sent to the robot, answering observation stamps)
  Publishes   dream/prediction (sensor_msgs/Image rgb8: the predicted next frame, stamped like the
                           frame it was predicted from) and dream/error (std_msgs/Float32: per-pixel
                           MSE in [0, 1] intensities of the prediction against the real frame that
                           came: a live out-of-domain signal)
  Service     reset        (std_srvs/Trigger): forget the real context
Both modes publish dream/image (rgb8: real | dream | goal side by side, for RViz) and read the
latched goal_image for its third panel.

Imagine: an episode starts from a real context window of the world-model run's dataset (by default
its held-out episodes); its first observation is the window's last real frame. One action = one
world-model step = frame_skip control steps of the model's config (the action is held for all of
them). An episode ends when the done probability exceeds done_threshold or after max_steps; with
auto_reset the next starts at once, else actions are refused until the reset service. Observations
are stamped with this node's clock when published; while no action comes, the current frame goes
out again every republish_period_s under a fresh stamp (so a policy's staleness check never drops
it), and one action steps the frame whatever stamp of it it answers: later answers to a frame
already stepped from are dropped silently.

Every Action is checked as sim_bridge checks it (names, units, scale, mode delta, finite values in
[-1, 1], the current episode id or none); bad actions and frames are dropped with a throttled
warning and change nothing. A missing or corrupt checkpoint ends the node at start (one line, exit 2).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, Header, String
from std_srvs.srv import Trigger

from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.msg import Action, Reward
from roboscape_r_ros.nodes.node_tools import (
    LATCHED,
    RELIABLE,
    Drops,
    StartupError,
    ThrottledWarnings,
    declare,
    rgb8_image,
    spin,
    stamp_ns,
)
from roboscape_r_ros.runtime.action_spec import ActionSpec, CommandRejected, check_command, metaworld_action_spec
from roboscape_r_ros.runtime.dream_session import (
    ContextPool,
    DreamError,
    DreamFrame,
    DreamSession,
    ShadowMonitor,
    load_world_model,
    side_by_side,
)

MODES = ("imagine", "shadow")


class Dreamer(Node):
    def __init__(self) -> None:
        super().__init__("dreamer")
        default = metaworld_action_spec()
        self.mode = declare(
            self,
            "mode",
            "imagine",
            "imagine: the world model is the environment; shadow: it predicts beside a real robot",
        )
        world_model = declare(
            self,
            "world_model",
            "",
            "world-model run folder (world_model.safetensors + split.json) or a .safetensors checkpoint",
        )
        device = declare(self, "device", "cpu", "torch device of the world model")
        dataset = declare(
            self, "dataset", "", "imagine: dataset of the context episodes (empty: the one the run's split.json names)"
        )
        episodes = declare(
            self, "context_episodes", "held_out", "imagine: context episodes: held_out (the run's split.json) or all"
        )
        context_frames = declare(
            self,
            "context_frames",
            0,
            "imagine: real context frames per reset (0: the model's context_length - 1)",
            low=0,
            high=1024,
        )
        max_steps = declare(
            self, "max_steps", 40, "imagine: world-model steps before an episode is truncated", low=1, high=1_000_000
        )
        done_threshold = declare(
            self,
            "done_threshold",
            0.9,
            "imagine: an episode ends when the done probability exceeds this",
            low=0.01,
            high=1.0,
        )
        seed = declare(self, "seed", 0, "imagine: seed of the context draws", low=0, high=2**31 - 1)
        self.auto_reset = declare(
            self,
            "auto_reset",
            True,
            "imagine: start the next episode as soon as one ends (else refuse actions until reset)",
        )
        self.republish_period_s = declare(
            self,
            "republish_period_s",
            0.2,
            "imagine: publish the current frame again (fresh stamp) after this long without an action (s)",
            low=0.01,
            high=3600.0,
        )
        names = declare(
            self, "action_names", list(default.names), "expected Action.names, one per world-model action dimension"
        )
        units = declare(self, "action_units", list(default.units), "expected Action.units")
        scale = declare(
            self, "action_scale", list(default.scale), "expected Action.scale (physical quantity per unit of value)"
        )
        self.frame_id = declare(self, "frame_id", "dream_camera", "frame_id of the published images")
        throttle_s = declare(
            self,
            "warning_period_s",
            5.0,
            "at most one warning per kind of bad input in this period (s)",
            low=0.0,
            high=3600.0,
        )
        if self.mode not in MODES:
            raise StartupError(f"dreamer: mode '{self.mode}' is not one of {', '.join(MODES)}")
        if not world_model:
            raise StartupError("dreamer: no world model given: set world_model (a train-wm run folder or .safetensors)")
        try:
            self.wm, run = load_world_model(world_model, device)
            n = len(names)
            self.spec = ActionSpec(tuple(names), tuple(units), tuple(scale), (-1.0,) * n, (1.0,) * n)
            if n != self.wm.cfg.action_dim:
                raise DreamError(
                    f"action_names has {n} names, world model {run.checkpoint} takes {self.wm.cfg.action_dim}-D actions"
                )
            if self.mode == "imagine":
                contexts = ContextPool(
                    self.wm, run, dataset=dataset, episodes=episodes, context_frames=context_frames, seed=seed
                )
                self.session = DreamSession(self.wm, contexts, max_steps=max_steps, done_threshold=done_threshold)
            else:
                self.monitor = ShadowMonitor(self.wm)
        except RoboscapeError as err:
            raise StartupError(f"dreamer: {err}") from None
        self.size = self.wm.cfg.image_size
        self.warnings = ThrottledWarnings(self, throttle_s)
        self.drops = Drops(self.warnings, "nothing changes")
        self.refused = 0
        self.goal: np.ndarray | None = None
        self.image_pub = self.create_publisher(Image, "dream/image", qos_profile_sensor_data)
        self.create_subscription(Image, "goal_image", self.on_goal, LATCHED)
        self.create_subscription(Action, "action", self.on_action, RELIABLE)
        self.create_service(Trigger, "reset", self.on_reset)
        what = (
            f"world model {run.checkpoint} ({self.size}x{self.size}, {self.wm.cfg.action_dim}-D actions, "
            f"frame_skip {self.wm.cfg.frame_skip})"
        )
        if self.mode == "imagine":
            self.observation_pub = self.create_publisher(Image, "observation", qos_profile_sensor_data)
            self.done_pub = self.create_publisher(Reward, "done", RELIABLE)
            self.episode_pub = self.create_publisher(String, "episode", LATCHED)
            self.stamps: list[int] = []  # stamps the current frame went out under
            self.stepped: deque[int] = deque(maxlen=256)  # stamps of frames already stepped from
            self.previous_episode = ""
            self.last_publish = time.monotonic()
            self.create_timer(
                min(self.republish_period_s, 0.1), self.on_timer, clock=Clock(clock_type=ClockType.STEADY_TIME)
            )
            self.start_episode()
            self.get_logger().info(
                f"imagine: {what}; {len(contexts.episodes)} context episodes, episodes of at most {max_steps} steps"
            )
        else:
            self.real: np.ndarray | None = None
            self.prediction_pub = self.create_publisher(Image, "dream/prediction", qos_profile_sensor_data)
            self.error_pub = self.create_publisher(Float32, "dream/error", RELIABLE)
            self.create_subscription(Image, "observation", self.on_observation, qos_profile_sensor_data)
            self.get_logger().info(f"shadow: {what}; publishing dream/prediction and dream/error")

    # -- inputs ---------------------------------------------------------------------------------
    def on_goal(self, msg: Image) -> None:
        goal = self.drops.decode(msg, "a goal image")
        if goal is not None:
            self.goal = goal

    def check(self, msg: Action) -> np.ndarray | None:
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

    def on_action(self, msg: Action) -> None:
        if self.mode == "imagine":
            self.imagine(msg)
            return
        values = self.check(msg)
        if values is not None:
            prediction = self.monitor.act(stamp_ns(msg.header), values)
            if prediction is not None:
                self.prediction_pub.publish(
                    rgb8_image(prediction, Header(stamp=msg.header.stamp, frame_id=self.frame_id))
                )

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.mode == "imagine":
            response.message = self.start_episode().episode_id
        else:
            self.monitor.reset()
            response.message = "shadow context cleared"
        self.get_logger().info(f"reset: {response.message}")
        response.success = True
        return response

    # -- imagine --------------------------------------------------------------------------------
    def start_episode(self) -> DreamFrame:
        self.previous_episode = self.session.frame.episode_id if self.session.frame is not None else ""
        self.stepped.extend(self.stamps)
        self.stamps = []
        frame = self.session.reset()
        self.episode_pub.publish(String(data=frame.episode_id))
        self.publish_frame(frame)
        return frame

    def imagine(self, msg: Action) -> None:
        frame = self.session.frame
        answers = stamp_ns(msg.header)
        if answers in self.stepped or (frame.ended and answers in self.stamps):
            return  # a repeated answer to a frame already stepped from, or the answer to a final frame
        if frame.ended:
            self.refuse("ended", f"episode {frame.episode_id} has ended (call the reset service)")
            return
        if msg.episode_id and msg.episode_id != frame.episode_id:
            if msg.episode_id != self.previous_episode:
                self.refuse(
                    "episode", f"it belongs to episode '{msg.episode_id}', the current one is '{frame.episode_id}'"
                )
            return  # else: the new episode's first frame overtook the latched id; its repeat is answered
        values = self.check(msg)
        if values is None:
            return
        frame = self.session.step(values)
        self.stepped.extend(self.stamps)
        self.stamps = []
        self.publish_frame(frame)
        if frame.ended:
            outcome = "truncated" if frame.truncated else f"done (p={frame.done_probability:.2f})"
            self.get_logger().info(f"episode {frame.episode_id} ended after {frame.step} steps: {outcome}")
            if self.auto_reset:
                self.start_episode()

    def publish_frame(self, frame: DreamFrame) -> None:
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        self.stamps.append(stamp_ns(header))
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
        panels = side_by_side(self.size, frame.context.frames[-1], frame.image, self.goal)
        self.image_pub.publish(rgb8_image(panels, header))
        self.last_publish = time.monotonic()

    def on_timer(self) -> None:
        if time.monotonic() - self.last_publish >= self.republish_period_s:
            self.publish_frame(self.session.frame)

    # -- shadow ---------------------------------------------------------------------------------
    def on_observation(self, msg: Image) -> None:
        image = self.drops.decode(msg, "an observation")
        if image is None:
            return
        try:
            result = self.monitor.observe(stamp_ns(msg.header), image)
        except DreamError as err:
            self.drops("observation-size", f"an observation: {err}")
            return
        if result is not None:
            self.error_pub.publish(Float32(data=result.mse))
            self.image_pub.publish(
                rgb8_image(side_by_side(self.size, result.real, result.prediction, self.goal), msg.header)
            )


def main(args: list[str] | None = None) -> int:
    return spin(Dreamer, args)


if __name__ == "__main__":
    raise SystemExit(main())
