"""reward_publisher: the endogenous reward of dreamed, simulated or real frames against a goal frame.

Subscribes  observation  (sensor_msgs/Image, any camera_ingest encoding, at the goal's size; best effort)
            goal_image   (sensor_msgs/Image, transient local), when goal_source=topic
            instruction  (std_msgs/String, transient local), when goal_source=instruction: the goal
                         model imagines the goal from the episode's first frame
            done         (roboscape_r_ros/Reward from the dreamer, reliable), when done_source=topic:
                         each frame's done probability, step and episode, paired by stamp
            episode      (std_msgs/String, transient local), when done_source=model: counts steps
Publishes   reward       (roboscape_r_ros/Reward, reliable; stamped like its frame)
            reward/marker (visualization_msgs/Marker TEXT_VIEW_FACING with the reward terms, for RViz)
            goal_image   (sensor_msgs/Image, transient local), when this node makes the goal
                         (goal_source=instruction or file), so policy_controller and RViz see it

r = alignment_scale * ((1 - D(frame, goal)) - alignment_offset) + done_bonus * [p >= done_threshold]
(runtime/reward_session.py). p: the dreamer's predicted done probability (done_source=topic, the
imagination graph), or the world model's done head on the frame itself (done_source=model, on
real or simulated frames; Reward.done then says whether p exceeds the threshold, and episodes end
elsewhere). With goal_source=instruction the instruction comes from the instruction topic, else
from the dreamer's done messages (the context episode's own), and a new goal is imagined at the
first frame of every episode, as the paper does. Without a goal no reward is published (throttled
warning); bad frames are dropped with a throttled warning; the node keeps running.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import Marker

from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.imagination.reward import RewardConfig
from roboscape_r_ros.msg import Reward
from roboscape_r_ros.nodes.node_tools import (
    LATCHED,
    RELIABLE,
    RELIABLE_BACKLOG,
    Drops,
    StartupError,
    ThrottledWarnings,
    declare,
    rgb8_image,
    spin,
    stamp_ns,
)
from roboscape_r_ros.perception.distance import PerceptionConfig
from roboscape_r_ros.runtime.dream_session import load_world_model
from roboscape_r_ros.runtime.reward_session import RewardSession, StepReward

GOAL_SOURCES = ("topic", "instruction", "file")
DONE_SOURCES = ("model", "topic")
BACKENDS = ("effnet", "lpips", "ssim")
PENDING = 32  # frames or done messages waiting for their partner (done_source=topic)
# Best effort like sensor data (any camera or the dreamer can feed it), but a deeper queue: a goal
# imagined at an episode's start must not cost the rewards of the frames that arrive meanwhile.
FRAMES = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)


class RewardPublisher(Node):
    def __init__(self) -> None:
        super().__init__("reward_publisher")
        world_model = declare(
            self,
            "world_model",
            "",
            "world-model run folder or .safetensors: the done head and the goal model (may stay empty with "
            "goal_source topic/file and done_source topic)",
        )
        device = declare(self, "device", "cpu", "torch device of the world model and the perceptual distance")
        self.goal_source = declare(
            self, "goal_source", "instruction", f"where the goal frame comes from: {', '.join(GOAL_SOURCES)}"
        )
        goal_file = declare(self, "goal_image_file", "", "goal_source=file: an 8-bit RGB PNG/JPEG of the frames' size")
        self.goal_max_steps = declare(
            self, "goal_max_steps", 50, "goal_source=instruction: imagined steps at most", low=1, high=10_000
        )
        self.done_source = declare(
            self, "done_source", "model", f"done probability: {', '.join(DONE_SOURCES)} (the dreamer's done topic)"
        )
        backend = declare(self, "perception", "effnet", f"perceptual distance D: {', '.join(BACKENDS)}")
        resolution = declare(
            self,
            "perception_resolution",
            128,
            "effnet input side (frames are resized to it; 0 = as given)",
            low=0,
            high=1024,
        )
        lpips_dir = declare(self, "lpips_dir", "", "perception=lpips: folder holding its weight files")
        bonus = declare(
            self, "done_bonus", 10.0, "bonus when the done probability reaches done_threshold", low=0.0, high=1e6
        )
        threshold = declare(self, "done_threshold", 0.9, "done probability that earns the bonus", low=0.01, high=1.0)
        offset = declare(
            self, "alignment_offset", 0.0, "subtracted from 1 - D (1: r = -D + bonus)", low=-10.0, high=10.0
        )
        scale = declare(self, "alignment_scale", 1.0, "multiplies the dense term", low=0.0, high=1e6)
        self.marker_frame = declare(self, "marker_frame_id", "world", "frame of reward/marker")
        throttle_s = declare(
            self,
            "warning_period_s",
            5.0,
            "at most one warning per kind of problem in this period (s)",
            low=0.0,
            high=3600.0,
        )
        for name, value, choices in (
            ("goal_source", self.goal_source, GOAL_SOURCES),
            ("done_source", self.done_source, DONE_SOURCES),
            ("perception", backend, BACKENDS),
        ):
            if value not in choices:
                raise StartupError(f"reward_publisher: {name} '{value}' is not one of {', '.join(choices)}")
        if not world_model and (self.goal_source == "instruction" or self.done_source == "model"):
            raise StartupError(
                f"reward_publisher: goal_source={self.goal_source} and done_source={self.done_source} need a "
                "world model (set world_model to a train-wm run folder or .safetensors)"
            )
        try:
            wm = load_world_model(world_model, device)[0] if world_model else None
            perception = PerceptionConfig(backend=backend, resolution=resolution, lpips_dir=lpips_dir, device=device)
            cfg = RewardConfig(
                perception, done_bonus=bonus, done_threshold=threshold, alignment_offset=offset, alignment_scale=scale
            )
            self.session = RewardSession(cfg, wm, device)
            if self.goal_source == "file":
                if not goal_file:
                    raise StartupError("reward_publisher: goal_source=file needs goal_image_file")
                self.session.set_goal(goal_file)
        except RoboscapeError as err:
            raise StartupError(f"reward_publisher: {err}") from None
        self.warnings = ThrottledWarnings(self, throttle_s)
        self.drops = Drops(self.warnings, "no reward for it")
        self.instruction = ""  # from the instruction topic
        self.episode_id, self.step = "", 0
        self.goal_episode: str | None = None  # episode whose first frame the imagined goal came from
        self.last_stamp: int | None = None  # done_source=model: the frame last rewarded
        self.rewarded: OrderedDict[tuple[str, int], None] = OrderedDict()  # done_source=topic: steps rewarded
        self.frames: OrderedDict[int, tuple[Header, np.ndarray]] = OrderedDict()
        self.outcomes: OrderedDict[int, Reward] = OrderedDict()
        self.reward_pub = self.create_publisher(Reward, "reward", RELIABLE)
        self.marker_pub = self.create_publisher(Marker, "reward/marker", RELIABLE)
        self.create_subscription(Image, "observation", self.on_observation, FRAMES)
        if self.goal_source == "topic":
            self.create_subscription(Image, "goal_image", self.on_goal, LATCHED)
        else:
            self.goal_pub = self.create_publisher(Image, "goal_image", LATCHED)
            if self.session.goal is not None:
                self.goal_pub.publish(rgb8_image(self.session.goal, Header(stamp=self.get_clock().now().to_msg())))
        if self.goal_source == "instruction":
            self.create_subscription(String, "instruction", self.on_instruction, LATCHED)
        if self.done_source == "topic":
            self.create_subscription(Reward, "done", self.on_done, RELIABLE_BACKLOG)
        else:
            self.create_subscription(String, "episode", self.on_episode, LATCHED)
        self.get_logger().info(
            f"reward with {backend} distance, goal from {self.goal_source}, done probability from {self.done_source}"
        )

    # -- inputs ---------------------------------------------------------------------------------
    def on_goal(self, msg: Image) -> None:
        goal = self.drops.decode(msg, "a goal image")
        if goal is None:
            return
        try:
            self.session.set_goal(goal)
        except RoboscapeError as err:
            self.drops("goal-size", f"a goal image: {err}")
            return
        self.get_logger().info(f"goal image received ({goal.shape[1]}x{goal.shape[0]})")

    def on_instruction(self, msg: String) -> None:
        self.instruction, self.goal_episode = msg.data.strip(), None  # imagined again at the next frame
        self.get_logger().info(f"instruction: '{self.instruction}'")

    def on_episode(self, msg: String) -> None:
        if msg.data != self.episode_id:
            self.episode_id, self.step, self.goal_episode = msg.data, 0, None

    def on_observation(self, msg: Image) -> None:
        image = self.drops.decode(msg, "an observation")
        if image is None:
            return
        stamp = stamp_ns(msg.header)
        if self.done_source == "model":
            if stamp != self.last_stamp:  # a frame sent again (a sim waiting for its action) counts once
                self.last_stamp = stamp
                self.reward_frame(msg.header, image, None)
            return
        if stamp in self.outcomes:
            self.reward_frame(msg.header, image, self.outcomes.pop(stamp))
        else:
            remember(self.frames, stamp, (msg.header, image))

    def on_done(self, msg: Reward) -> None:
        stamp = stamp_ns(msg.header)
        if stamp in self.frames:
            header, image = self.frames.pop(stamp)
            self.reward_frame(header, image, msg)
        else:
            remember(self.outcomes, stamp, msg)

    # -- the reward -----------------------------------------------------------------------------
    def reward_frame(self, header: Header, image: np.ndarray, outcome: Reward | None) -> None:
        """One reward for one frame; ``outcome``: the dreamer's account of it (None: the done head's)."""
        if outcome is not None:
            key = (outcome.episode_id, outcome.step)
            if key in self.rewarded:
                return  # the dreamer sent this step's frame again
            remember(self.rewarded, key, None, 4 * PENDING)
            self.episode_id, self.step = outcome.episode_id, outcome.step
        instruction = self.instruction or (outcome.instruction if outcome is not None else "")
        if self.goal_source == "instruction" and instruction and self.goal_episode != self.episode_id:
            if not self.imagine_goal(image, instruction):
                return
        if self.session.goal is None:
            waiting = "an instruction" if self.goal_source == "instruction" else f"a goal ({self.goal_source})"
            self.warnings.warn("goal", f"no goal yet (waiting for {waiting}): no reward published")
            return
        try:
            terms = self.session(image, None if outcome is None else outcome.done_probability)
        except RoboscapeError as err:
            self.drops("observation-size", f"an observation: {err}")
            return
        self.publish(header, terms, outcome, instruction)
        if outcome is None:
            self.step += 1

    def imagine_goal(self, image: np.ndarray, instruction: str) -> bool:
        try:
            goal, fired = self.session.imagine_goal(image, instruction, self.goal_max_steps)
        except RoboscapeError as err:
            self.drops("observation-size", f"a first frame to imagine the goal from: {err}")
            return False
        self.goal_episode = self.episode_id
        self.goal_pub.publish(rgb8_image(goal, Header(stamp=self.get_clock().now().to_msg())))
        ending = (
            "the done head fired"
            if fired
            else f"its last imagined frame (done never fired in {self.goal_max_steps} steps)"
        )
        self.get_logger().info(f"goal imagined for '{instruction}' (episode {self.episode_id or '?'}): {ending}")
        return True

    def publish(self, header: Header, terms: StepReward, outcome: Reward | None, instruction: str) -> None:
        threshold = self.session.cfg.done_threshold
        msg = Reward(
            header=header,
            reward=terms.reward,
            goal_alignment=terms.alignment,
            done_bonus=terms.bonus,
            done_probability=terms.done_probability,
            step=self.step,
            episode_id=self.episode_id,
            instruction=instruction,
            perceptual_backend=terms.backend,
        )
        if outcome is not None:
            msg.done, msg.truncated, msg.subtask_index = outcome.done, outcome.truncated, outcome.subtask_index
        else:
            msg.done = terms.done_probability > threshold
        self.reward_pub.publish(msg)
        marker = Marker(
            header=Header(stamp=header.stamp, frame_id=self.marker_frame),
            ns="reward",
            id=0,
            type=Marker.TEXT_VIEW_FACING,
            action=Marker.ADD,
        )
        marker.pose.position.y, marker.pose.position.z, marker.pose.orientation.w = 0.6, 0.5, 1.0
        marker.scale.z = 0.04
        marker.color.r = marker.color.g = marker.color.b = marker.color.a = 1.0
        marker.text = (
            f"reward {terms.reward:.3f} (1-D {terms.alignment:.3f}, bonus {terms.bonus:g})\n"
            f"done p {terms.done_probability:.2f}  step {self.step}  {self.episode_id}"
        )
        self.marker_pub.publish(marker)


def remember(buffer: OrderedDict, key, value, limit: int = PENDING) -> None:
    """Insert into a bounded buffer, forgetting the oldest entries beyond ``limit``."""
    buffer[key] = value
    while len(buffer) > limit:
        buffer.popitem(last=False)


def main(args: list[str] | None = None) -> int:
    return spin(RewardPublisher, args)


if __name__ == "__main__":
    raise SystemExit(main())
