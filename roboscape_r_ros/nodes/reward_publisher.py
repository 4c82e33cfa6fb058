"""reward_publisher: the endogenous reward of dreamed, simulated or real frames against a goal frame.

Topics, services and behaviour: docs/nodes.md#reward_publisher.
"""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import Marker

from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.msg import Reward
from roboscape_r_ros.nodes.messaging import LATCHED, RELIABLE, RELIABLE_BACKLOG, rgb8_image, stamp_ns
from roboscape_r_ros.nodes.node_tools import (
    Drops,
    StartupError,
    ThrottledWarnings,
    declare_parameters,
    limit_threads,
    spin,
)
from roboscape_r_ros.runtime.gates.stamp_join import Seen, StampJoin
from roboscape_r_ros.runtime.sessions.dream_session import load_world_model
from roboscape_r_ros.runtime.sessions.reward_session import RewardPublisherParams, RewardSession, StepReward

PENDING = 32  # frames or done messages waiting for their partner (done_source=topic)
# Best effort like sensor data (any camera or the dreamer can feed it), but a deeper queue: a goal
# imagined at an episode's start must not cost the rewards of the frames that arrive meanwhile.
FRAMES = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)


class RewardPublisher(Node):
    def __init__(self) -> None:
        super().__init__("reward_publisher")
        self.params = p = declare_parameters(self, RewardPublisherParams)
        limit_threads(p.threads)
        if not p.world_model and (p.goal_source == "instruction" or p.done_source == "model"):
            raise StartupError(
                f"reward_publisher: goal_source={p.goal_source} and done_source={p.done_source} need a "
                "world model (set world_model to a train-wm run folder or .safetensors)"
            )
        if p.goal_source == "file" and not p.goal_image_file:
            raise StartupError("reward_publisher: goal_source=file needs goal_image_file")
        try:
            wm = load_world_model(p.world_model, p.device)[0] if p.world_model else None
            self.session = RewardSession(p.reward_config(), wm, p.device)
            if p.goal_source == "file":
                self.session.set_goal(p.goal_image_file)
        except RoboscapeError as err:
            raise StartupError(f"reward_publisher: {err}") from None
        if p.goal_source == "instruction" and wm is not None and wm.cfg.train.goal_steps == 0:
            self.get_logger().warning(
                "the world model's goal stage was not trained (model.train.goal_steps=0): the goals it imagines "
                "are not the task's; give a goal on goal_image (goal_source=topic) or goal_source=file"
            )
        self.warnings = ThrottledWarnings(self, p.warning_period_s)
        self.drops = Drops(self.warnings, "no reward for it")
        self.instruction = ""  # from the instruction topic
        self.episode_id, self.step = "", 0
        self.goal_episode: str | None = None  # episode whose first frame the imagined goal came from
        self.last_stamp: int | None = None  # done_source=model: the frame last rewarded
        self.rewarded = Seen(4 * PENDING)  # done_source=topic: (episode, step) rewarded
        self.join: StampJoin[tuple[Header, np.ndarray], Reward] = StampJoin(PENDING)  # frames with the dreamer's done
        self.reward_pub = self.create_publisher(Reward, "reward", RELIABLE)
        self.marker_pub = self.create_publisher(Marker, "reward/marker", RELIABLE)
        self.create_subscription(Image, "observation", self.on_observation, FRAMES)
        if self.params.goal_source == "topic":
            self.create_subscription(Image, "goal_image", self.on_goal, LATCHED)
        else:
            self.goal_pub = self.create_publisher(Image, "goal_image", LATCHED)
            if self.session.goal is not None:
                self.goal_pub.publish(rgb8_image(self.session.goal, Header(stamp=self.get_clock().now().to_msg())))
        if self.params.goal_source == "instruction":
            self.create_subscription(String, "instruction", self.on_instruction, LATCHED)
        if self.params.done_source == "topic":
            self.create_subscription(Reward, "done", self.on_done, RELIABLE_BACKLOG)
        else:
            self.create_subscription(String, "episode", self.on_episode, LATCHED)
        self.get_logger().info(
            f"reward with {p.perception} distance, goal from {p.goal_source}, done probability from {p.done_source}"
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
        if self.params.done_source == "model":
            if stamp != self.last_stamp:  # a frame sent again (a sim waiting for its action) counts once
                self.last_stamp = stamp
                self.reward_frame(msg.header, image, None)
            return
        outcome = self.join.left(stamp, (msg.header, image))
        if outcome is not None:
            self.reward_frame(msg.header, image, outcome)

    def on_done(self, msg: Reward) -> None:
        frame = self.join.right(stamp_ns(msg.header), msg)
        if frame is not None:
            self.reward_frame(*frame, msg)

    # -- the reward -----------------------------------------------------------------------------
    def reward_frame(self, header: Header, image: np.ndarray, outcome: Reward | None) -> None:
        """One reward for one frame; ``outcome``: the dreamer's account of it (None: the done head's)."""
        if outcome is not None:
            if not self.rewarded.first((outcome.episode_id, outcome.step)):
                return  # the dreamer sent this step's frame again
            self.episode_id, self.step = outcome.episode_id, outcome.step
        instruction = self.instruction or (outcome.instruction if outcome is not None else "")
        if self.params.goal_source == "instruction" and instruction and self.goal_episode != self.episode_id:
            if not self.imagine_goal(image, instruction):
                return
        if self.session.goal is None:
            waiting = (
                "an instruction" if self.params.goal_source == "instruction" else f"a goal ({self.params.goal_source})"
            )
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
            goal, fired = self.session.imagine_goal(image, instruction, self.params.goal_max_steps)
        except RoboscapeError as err:
            self.drops("observation-size", f"a first frame to imagine the goal from: {err}")
            return False
        self.goal_episode = self.episode_id
        self.goal_pub.publish(rgb8_image(goal, Header(stamp=self.get_clock().now().to_msg())))
        ending = (
            "the done head fired"
            if fired
            else f"its last imagined frame (done never fired in {self.params.goal_max_steps} steps)"
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
            header=Header(stamp=header.stamp, frame_id=self.params.marker_frame_id),
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


def main(args: list[str] | None = None) -> int:
    return spin(RewardPublisher, args)


if __name__ == "__main__":
    raise SystemExit(main())
