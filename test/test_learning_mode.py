"""policy_controller's learning mode: the rclpy-free learner (runtime/learner.py) matches rewards to
transitions and improves a policy with the same PPO update as offline training (measured effect);
then the node itself, as a real process fed observation, goal and reward messages by the test,
performs an update and writes a new checkpoint."""

import json

import numpy as np
import pytest
import torch

from roboscape_r_ros.contract.action_spec import ActionSpec
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig, obs_batch
from roboscape_r_ros.rl.ppo import PPOConfig
from roboscape_r_ros.runtime.inference.learned_policy import Decision
from roboscape_r_ros.runtime.inference.policies import BackendOptions, PolicyInput, make_backend
from roboscape_r_ros.runtime.learner import Learner, LearnerError

TINY = dict(image_size=8, action_dim=2, channels=[8], hidden=16)


def decision(value: float) -> Decision:
    frame = np.full((8, 8, 3), int(value * 10), np.uint8)
    return Decision(frame, frame, np.array([[value, -value]], np.float32), -1.0, value)


def test_rewards_are_matched_by_stamp_and_episode_and_settle_like_train_ppo(tmp_path):
    policy = ImagePolicy(PolicyConfig(**TINY))
    learner = Learner(policy, PPOConfig(num_steps=6, gamma=0.5, normalize_reward=False), tmp_path)
    # Episode A: frames 10..40; the reward on frame s pays the action that answered the frame before s.
    for stamp in (10, 20, 30, 40):
        learner.record(stamp, "A", decision(stamp / 100))
    assert not learner.reward(10, "A", 9.0, False, False)  # first frame of an episode: no action led to it
    assert learner.reward(20, "A", 1.0, False, False) and learner.reward(30, "A", 2.0, False, False)
    assert learner.reward(40, "A", 3.0, True, False)  # terminated; frame 40 was answered but never rewarded
    # Episode B: the reward on frame 70 is lost; the episode is cut at the step cap after frame 90.
    for stamp in (50, 60, 70, 80, 90):
        learner.record(stamp, "B", decision(stamp / 100))
    assert not learner.reward(50, "B", 9.0, False, False)  # pays for nothing (frame 40 was episode A)
    assert learner.reward(60, "B", 4.0, False, False)
    assert learner.reward(80, "B", 6.0, False, False) and learner.reward(90, "B", 7.0, True, True)
    assert not learner.reward(90, "B", 7.0, True, True)  # twice for one transition: refused
    assert learner.ready()
    buffer = learner.take_rollout()
    # Transitions of frames 10, 20, 30 (terminal), 50 (cut: its successor 60 never got a reward,
    # bootstrapped with V(60)), 70, 80 (truncated: bootstrapped with V(90)).
    assert buffer.values[:, 0].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.5, 0.7, 0.8])
    assert buffer.rewards[:, 0].tolist() == pytest.approx([1.0, 2.0, 3.0, 4.0 + 0.5 * 0.6, 6.0, 7.0 + 0.5 * 0.9])
    assert buffer.dones[:, 0].tolist() == [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]  # 1: first row of an episode (chain)
    assert buffer.next_done.tolist() == [1.0]
    assert buffer.actions[3, 0, 0].tolist() == pytest.approx([0.5, -0.5]) and buffer.images[3, 0].eq(5).all()
    assert dict(learner.counts) == {"recorded": 9, "rewarded": 6, "unmatched": 3, "dropped": 2}
    assert not learner.ready() and learner.steps[0].stamp_ns == 90  # the final frame waits (its reward never comes)


def test_a_chunked_policy_is_refused(tmp_path):
    with pytest.raises(LearnerError, match="chunks of 3"):
        Learner(ImagePolicy(PolicyConfig(**TINY, chunk=3)), PPOConfig(), tmp_path)


def test_the_learner_moves_the_policy_toward_a_rewarded_action(tmp_path):
    """A bandit over the topic-loop interface: reward = -|action - target| (L1), one-step episodes.
    The policy's mean starts near 0 (CleanRL's small init), 1.2 from the target in L1."""
    torch.manual_seed(0)
    path = ImagePolicy(PolicyConfig(**TINY, init_log_std=-0.5)).save(tmp_path / "start.safetensors")
    spec = ActionSpec(("a", "b"), ("1", "1"), (1.0, 1.0), (-1.0, -1.0), (1.0, 1.0))
    backend = make_backend("learned", BackendOptions(spec, checkpoint=str(path), sample=True, seed=0))
    cfg = PPOConfig(num_steps=64, update_epochs=4, num_minibatches=4, lr=3e-3, critic_lr=3e-3)
    learner = Learner(backend.policy, cfg, tmp_path / "learning")
    target = np.array([0.6, -0.6], np.float32)
    rng = np.random.default_rng(0)
    goal = np.full((8, 8, 3), 128, np.uint8)
    probe = obs_batch(rng.integers(0, 255, (8, 8, 3), np.uint8), goal)

    def distance() -> float:
        with torch.no_grad():
            return float(np.abs(backend.policy.mean(probe)[0, 0].numpy() - target).sum())

    before, updates = distance(), []
    for step in range(64 * 8):
        image = rng.integers(0, 255, (8, 8, 3), np.uint8)
        action = backend.act(PolicyInput(image=image, goal=goal))
        learner.record(2 * step, f"ep{step}", backend.last_decision)
        learner.reward(2 * step + 1, f"ep{step}", -float(np.abs(action - target).sum()), True, False)
        if learner.ready():
            updates.append(learner.update(learner.take_rollout()))
    after = distance()
    print(
        f"L1 distance of the mean to the target {before:.3f} -> {after:.3f}; mean reward "
        f"{updates[0]['rollout/reward']:.3f} -> {updates[-1]['rollout/reward']:.3f}"
    )
    assert len(updates) == 8 and before > 1.1
    assert after < 0.4 * before  # measured over 4 seeds: 1.20 -> 0.07..0.39
    assert updates[-1]["rollout/reward"] > updates[0]["rollout/reward"] + 0.5  # -1.30..-1.48 -> -0.54..-0.61
    lines = (tmp_path / "learning" / "updates.jsonl").read_text().splitlines()
    assert [json.loads(line)["update"] for line in lines] == list(range(1, 9))
    saved = ImagePolicy.load(tmp_path / "learning" / "policy.safetensors")
    torch.testing.assert_close(saved.mean(probe), backend.policy.mean(probe))


def test_policy_controller_in_learning_mode_updates_and_saves_the_policy(ros, tmp_path):
    """The harness plays camera, goal source and reward publisher (reward = -|action|) for a
    learned backend with a random-init checkpoint; after 8 transitions the node runs one PPO update,
    holds meanwhile, writes a new checkpoint and acts on with the updated policy."""
    msg = pytest.importorskip("roboscape_r_ros.msg")
    from std_msgs.msg import String

    from helpers.policy_rig import Rig, camera_image
    from helpers.ros_harness import RELIABLE_50

    start = ImagePolicy(PolicyConfig(image_size=16, action_dim=4, channels=[8], hidden=16)).save(
        tmp_path / "start.safetensors"
    )
    out = tmp_path / "learning"
    proc = ros.start(
        "roboscape_r_ros.nodes.policy_controller",
        "--params-file",
        "config/policy_controller.yaml",
        "-p",
        "backend:=learned",
        "-p",
        f"checkpoint:={start}",
        "-p",
        "learning.enabled:=true",
        "-p",
        "learning.rollout_steps:=8",
        "-p",
        f"learning.output:={out}",
        "-p",
        "learning.ppo:=update_epochs=2 num_minibatches=2",
        "-p",
        "stale_after_s:=20.0",
        "-p",
        "max_delta:=[2.0, 2.0, 2.0, 2.0]",
    )
    rig = Rig(ros)
    assert ros.spin_until(
        lambda: rig.obs_pub.get_subscription_count() > 0, 30
    )  # node up: frames stamped from now on are fresh
    reward_pub = ros.node.create_publisher(msg.Reward, "reward", RELIABLE_50)
    rig.episode_pub.publish(String(data="ep-learn"))
    rig.goal_pub.publish(camera_image(rig.now(), size=16))
    checkpoint = out / "policy.safetensors"
    previous = None
    for step in range(40):  # 8 transitions + their successors suffice; more frames wait out the update
        obs = camera_image(rig.now(), size=16)
        if previous is not None:  # the reward on this frame pays the action that answered the previous one
            reward_pub.publish(
                msg.Reward(
                    header=obs.header, reward=-float(np.abs(previous.values).sum()), step=step, episode_id="ep-learn"
                )
            )
        previous = rig.answer(obs, timeout_s=30)
        assert previous.source == "learned" and previous.episode_id in ("", "ep-learn")
        if checkpoint.exists():
            break
    assert checkpoint.exists(), "no checkpoint after 40 steps"
    rig.answer(camera_image(rig.now(), size=16), timeout_s=30)  # acting again after the update
    log = ros.stop(proc)
    assert "learning mode: sampled actions, a PPO update every 8 transitions" in log, log
    assert "learning: PPO update 1 on 8 transitions; holding the arm (no commands) until it is done" in log, log
    assert "learning: update 1 done in" in log and "resuming" in log and "Traceback" not in log, log
    updated, initial = ImagePolicy.load(checkpoint), ImagePolicy.load(start)
    assert not torch.equal(updated.actor_mean.weight, initial.actor_mean.weight)
    assert len((out / "updates.jsonl").read_text().splitlines()) == 1
