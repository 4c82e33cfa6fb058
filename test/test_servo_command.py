"""sim_bridge's MoveIt Servo contract without ROS (contract/servo_command.py): twist -> Meta-World
action, the command timeout in simulated time, and every refusal leaving the previous command alone."""

import re

import numpy as np
import pytest

from roboscape_r_ros.contract.action_spec import CommandRejected
from roboscape_r_ros.contract.servo_command import ServoFollower, ServoParams

MS = 1_000_000
ZERO = np.zeros(3)


def follower(**params) -> ServoFollower:
    servo = ServoFollower(ServoParams(**params), "world")
    servo.new_episode(100 * MS)
    return servo


def send(servo, linear, *, stamp_ms=100, now_ms=100, frame="world", angular=ZERO) -> bool:
    return servo.command(
        frame_id=frame, stamp_ns=stamp_ms * MS, linear=np.asarray(linear, float), angular=angular, now_ns=now_ms * MS
    )


def test_a_twist_moves_the_hand_at_its_speed_until_it_times_out_in_simulated_time():
    servo = follower()
    assert not servo.started and servo.linear_action(100 * MS) is None  # the episode waits for a command
    assert send(servo, [0.4, -0.8, 0.0])
    assert servo.started
    # 0.4 m/s over one 12.5 ms step is 5 mm: half a Meta-World unit (1 cm per step).
    np.testing.assert_allclose(servo.linear_action(100 * MS), [0.5, -1.0, 0.0])
    np.testing.assert_allclose(servo.linear_action(199 * MS), [0.5, -1.0, 0.0])  # held while younger than 0.1 s
    assert servo.linear_action(200 * MS) is None  # stamped command_timeout_s ago: dropped, the arm holds
    assert send(servo, [0.0, 0.0, 0.1], stamp_ms=210, now_ms=212)
    np.testing.assert_allclose(servo.linear_action(212 * MS), [0.0, 0.0, 0.125])


def test_scale_and_timeout_are_parameters():
    servo = follower(scale=2.0, command_timeout_s=0.25)
    send(servo, [0.1, 0.0, 0.0])
    np.testing.assert_allclose(servo.linear_action(349 * MS), [0.2, 0.0, 0.0])
    assert servo.linear_action(350 * MS) is None


@pytest.mark.parametrize(
    "kwargs, reason, expected",
    [
        ({"frame": "panda_link0"}, "frame", "twist in frame 'panda_link0', not the sim's 'world'"),
        ({"linear": [np.nan, 0, 0]}, "nonfinite", "is not finite"),
        ({"angular": np.array([0.0, 0.0, 0.1])}, "angular", "Meta-World's hand keeps its orientation"),
        ({"linear": [0.81, 0, 0]}, "range", "beyond the arm's 0.8 m/s per axis"),
        ({"stamp_ms": 150, "now_ms": 250}, "stale", "at least command_timeout_s (0.1 s): dropped"),
        ({"stamp_ms": 0}, "stale", "stamped"),  # an unstamped twist (stamp 0), as Servo would
        ({"stamp_ms": 1_700_000_000_000}, "future", "ahead of the sim's time (is its sender on use_sim_time?)"),
    ],
)
def test_bad_twists_are_refused_and_the_previous_command_keeps_its_own_timeout(kwargs, reason, expected):
    servo = follower()
    send(servo, [0.8, 0.0, 0.0], stamp_ms=150, now_ms=150)
    args = {"linear": [0.1, 0.0, 0.0], "stamp_ms": 160, "now_ms": 160, **kwargs}
    with pytest.raises(CommandRejected, match=re.escape(expected)) as err:
        send(servo, args.pop("linear"), **args)
    assert err.value.reason == reason
    np.testing.assert_allclose(servo.linear_action(249 * MS), [1.0, 0.0, 0.0])
    assert servo.linear_action(250 * MS) is None


def test_the_full_speed_of_a_delta_action_passes_despite_rounding():
    # policy_controller's twist for dx = 1 (1 cm per 12.5 ms): 0.01 / 0.0125 m/s, a hair above 0.8 in floats.
    servo = follower()
    assert send(servo, [1.0 * 0.01 / 0.0125 * (1 + 1e-12), 0.0, 0.0])
    assert servo.linear_action(100 * MS).max() <= 1.0


def test_a_new_episode_starts_at_rest_and_ignores_answers_to_the_previous_one():
    servo = follower()
    send(servo, [0.8, 0.0, 0.0], stamp_ms=150, now_ms=150)
    servo.new_episode(162 * MS)
    assert not servo.started and servo.linear_action(162 * MS) is None
    assert not send(servo, [0.8, 0.0, 0.0], stamp_ms=150, now_ms=162)  # answers a frame of the last episode
    assert not servo.started
    assert send(servo, [0.0, 0.8, 0.0], stamp_ms=162, now_ms=162)
    np.testing.assert_allclose(servo.linear_action(175 * MS), [0.0, 1.0, 0.0])
