"""reward_publisher: its core (runtime/sessions/reward_session.py) against imagination.reward, and the node as
a real process: a reward per frame stamped like it, every Reward field filled, a text marker, nothing
without a goal, bad frames and goals dropped with a throttled warning, bad parameters refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from helpers.wm_synthetic import tiny_run
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.imagination.reward import EndogenousReward, RewardConfig
from roboscape_r_ros.perception.distance import PerceptionConfig
from roboscape_r_ros.runtime.sessions.dream_session import DreamError, load_world_model
from roboscape_r_ros.runtime.sessions.reward_session import RewardSession

SSIM = RewardConfig(perception=PerceptionConfig(backend="ssim"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("reward"))


@pytest.fixture(scope="module")
def frames(run):
    return EpisodeDataset.open(load_world_model(run)[1].split["dataset"]).load_arrays().frames  # uint8 [N,32,32,3]


def test_session_is_the_endogenous_reward_of_one_row(run, frames, tmp_path):
    wm = load_world_model(run)[0]
    rewards = RewardSession(SSIM, wm)
    with pytest.raises(DreamError, match="no goal yet"):
        rewards(frames[0])
    rewards.set_goal(frames[10])
    expected = EndogenousReward(SSIM, 1).score(frames[3:4], frames[10:11], np.array([0.95]))
    terms = rewards(frames[3], done_probability=0.95)
    assert (
        terms.reward == pytest.approx(float(expected.reward[0]), abs=1e-6)
        and terms.bonus == 10.0
        and terms.backend == "ssim"
    )
    own = rewards(frames[3])  # the done head on the frame alone
    assert own.done_probability == pytest.approx(
        float(wm.done_probability(frames[None, 3:4], np.zeros((1, 0, 4)))[0, 0])
    )
    with pytest.raises(DreamError, match="the goal is uint8"):
        rewards(frames[3][:16])
    goal, _ = rewards.imagine_goal(frames[0], "Reach the blue marker.", max_steps=3)
    assert goal.shape == (32, 32, 3) and np.array_equal(rewards.goal, goal)
    rewards.set_goal(frames[10])  # an episode from the same context frame gets the goal imagined for it
    again, _ = rewards.imagine_goal(frames[0].copy(), "Reach the blue marker.", max_steps=3)
    assert np.array_equal(again, goal) and len(rewards.imagined) == 1
    rewards.imagine_goal(frames[1], "Reach the blue marker.", max_steps=3)
    assert len(rewards.imagined) == 2
    # Without a world model: a goal file of any square size; no done head, no goal model.
    path = tmp_path / "goal.png"
    PILImage.fromarray(np.zeros((48, 48, 3), np.uint8)).save(path)
    bare = RewardSession(SSIM)
    assert bare.set_goal(path).shape == (48, 48, 3) and bare(
        np.zeros((48, 48, 3), np.uint8), 0.0
    ).distance == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(DreamError, match="a world model is needed"):
        bare(np.zeros((48, 48, 3), np.uint8))
    PILImage.fromarray(np.zeros((40, 48, 3), np.uint8)).save(path)
    with pytest.raises(RoboscapeError, match="48x40 pixels; expected an 8-bit RGB square image"):
        bare.set_goal(path)
    with pytest.raises(RoboscapeError, match=r"uint8 \[40, 48, 3\]; expected an 8-bit RGB square image"):
        bare.set_goal(np.zeros((40, 48, 3), np.uint8))


def test_bad_startup_parameters_are_refused_with_their_reason(ros, run, tmp_path):
    """reward_publisher's own checks (world models, goals), in this process; the node's
    process ending with one such line: test_node_parameters."""
    from helpers.ros_harness import startup_error
    from roboscape_r_ros.nodes.reward_publisher import RewardPublisher

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    wrong_size = tmp_path / "goal.png"
    PILImage.fromarray(np.zeros((20, 20, 3), np.uint8)).save(wrong_size)
    cases = [
        (["done_source:=oracle"], "done_source"),
        (["perception:=l2"], "perception"),
        (["world_model:=''"], "need a world model"),
        ([f"world_model:={broken}"], "not a readable safetensors file"),
        (["goal_source:=file"], "needs goal_image_file"),
        (["goal_source:=file", f"goal_image_file:={wrong_size}"], "20x20 pixels; expected an 8-bit RGB 32x32 image"),
    ]
    for params, expected in cases:
        assert expected in startup_error(ros, RewardPublisher, f"world_model:={run}", "perception:=ssim", *params), (
            params
        )


def test_a_reward_per_frame_nothing_without_a_goal_and_bad_input_dropped(ros, run, frames):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from visualization_msgs.msg import Marker

    from helpers.ros_harness import image
    from roboscape_r_ros.msg import Reward

    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    rewards, markers = [], []
    ros.node.create_subscription(Reward, "reward", rewards.append, reliable)
    ros.node.create_subscription(Marker, "reward/marker", markers.append, reliable)
    obs = ros.node.create_publisher(Image, "observation", qos_profile_sensor_data)
    goal_pub = ros.node.create_publisher(Image, "goal_image", latched)
    proc = ros.start(
        "roboscape_r_ros.nodes.reward_publisher",
        "--params-file",
        "config/reward_publisher.yaml",
        "-p",
        f"world_model:={run}",
        "-p",
        "goal_source:=topic",
        "-p",
        "perception:=ssim",
        "-p",
        "warning_period_s:=60.0",
    )
    assert ros.spin_until(lambda: obs.get_subscription_count() and goal_pub.get_subscription_count(), 60), (
        "no reward_publisher"
    )
    ros.spin_until(lambda: False, 0.5)
    for t in range(3):  # no goal yet: no reward
        obs.publish(image(frames[t], 1_000 + t))
        ros.spin_until(lambda: False, 0.05)
    goal_pub.publish(image(frames[0][:16], 1))  # a goal of the wrong size: dropped
    ros.spin_until(lambda: False, 0.3)
    assert not rewards
    goal_pub.publish(image(frames[12], 1))
    ros.spin_until(lambda: False, 0.3)
    short = image(frames[0], 5)
    short.data = short.data[:100]
    for bad in (image(frames[0], 5, "yuv422"), image(frames[0][:16], 5), short):
        obs.publish(bad)
    stamps = [2_000_000 * (t + 1) for t in range(5)]
    for t, stamp in enumerate(stamps):
        obs.publish(image(frames[8 + t], stamp))
        obs.publish(image(frames[8 + t], stamp))  # the same frame again (a sim waiting): one reward
        ros.spin_until(lambda t=t: len(rewards) > t, 5)
    assert ros.spin_until(lambda: len(rewards) >= 5 and len(markers) >= 5, 10)
    ros.spin_until(lambda: False, 0.3)
    assert [r.header.stamp.nanosec for r in rewards] == stamps
    expected = EndogenousReward(SSIM, 1).score(
        frames[8:13], frames[12:13], np.array([r.done_probability for r in rewards])
    )
    np.testing.assert_allclose([r.reward for r in rewards], expected.reward.numpy(), atol=1e-5)
    last = rewards[-1]
    assert (
        last.goal_alignment == pytest.approx(1.0, abs=1e-5) and last.perceptual_backend == "ssim"
    )  # the goal frame itself
    assert [r.step for r in rewards] == [0, 1, 2, 3, 4] and all(0.0 < r.done_probability < 1.0 for r in rewards)
    assert all(r.done == (r.done_probability > 0.9) and not r.truncated for r in rewards)
    assert (
        markers[-1].type == Marker.TEXT_VIEW_FACING
        and markers[-1].text.startswith("reward ")
        and markers[-1].header.frame_id == "world"
    )
    log = ros.stop(proc)
    assert proc.returncode == 0 and "Traceback" not in log, log
    for expected_line in (
        "no goal yet",
        "goal image array is uint8 [16, 32, 3]",
        "goal image received",
        "the goal is uint8 [32, 32, 3]",
        "encoding 'yuv422' is not supported",
        "data holds",
    ):
        assert expected_line in log, (expected_line, log)
    assert log.count("no goal yet") == 1  # throttled
