"""Action and Reward round trip between two processes over DDS, every field intact."""

import math

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy

msg = pytest.importorskip("roboscape_r_ros.msg")


def make_action():
    a = msg.Action(names=["x", "y", "z", "gripper"], units=["m", "m", "m", "1"], values=[0.01, -0.02, 0.5, -1.0])
    a.header.frame_id = "base_link"
    a.header.stamp.sec, a.header.stamp.nanosec = 12, 345
    a.scale, a.lower, a.upper = [0.01] * 4, [-1.0] * 4, [1.0] * 4
    a.mode = msg.Action.MODE_DELTA
    a.duration.nanosec = 12_500_000
    a.step, a.episode_id, a.source = 7, "ep-0003", "policy"
    return a


def make_reward():
    r = msg.Reward(reward=10.8, goal_alignment=0.8, done_bonus=10.0, done_probability=0.93, done=True, truncated=False)
    r.header.frame_id = "camera"
    r.step, r.episode_id, r.subtask_index = 41, "ep-0003", 0
    r.instruction, r.perceptual_backend = "Push the puck to the goal.", "effnet"
    return r


def test_action_and_reward_round_trip_between_processes(ros):
    ros.start("test/helpers/ros_echo.py")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    received = {}
    for msg_type, topic, sample in ((msg.Action, "action", make_action()), (msg.Reward, "reward", make_reward())):
        pub = ros.node.create_publisher(msg_type, topic, qos)
        ros.node.create_subscription(msg_type, f"{topic}_echo", lambda m, t=topic: received.setdefault(t, m), qos)
        assert ros.spin_until(lambda t=topic: t in received, 20.0, tick=lambda p=pub, s=sample: p.publish(s)), topic
        assert received[topic] == sample, topic
    assert math.isclose(received["reward"].done_probability, 0.93)
