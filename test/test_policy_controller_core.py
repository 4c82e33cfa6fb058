"""The pure-Python core behind policy_controller and sim_bridge (no ROS): action checks, safety,
adapters, policy backends and the sim session."""

import math

import numpy as np
import pytest

from roboscape_r_ros.contract import adapters
from roboscape_r_ros.contract.action_spec import (
    MODE_ABSOLUTE,
    MODE_DELTA,
    MODE_VELOCITY,
    ActionSpec,
    ActionSpecError,
    CommandRejected,
    check_command,
    metaworld_action_spec,
)
from roboscape_r_ros.contract.safety import SafetyConfigError, SafetyFilter, Watchdog, is_stale
from roboscape_r_ros.runtime.inference.policies import (
    BackendError,
    BackendOptions,
    PolicyBackend,
    PolicyInput,
    make_backend,
    register_backend,
)

SPEC = metaworld_action_spec()
GOOD = dict(
    names=["dx", "dy", "dz", "gripper"],
    units=["m", "m", "m", "1"],
    values=[0.1, -0.2, 0.3, 1.0],
    scale=[0.01, 0.01, 0.01, 1.0],
    mode=MODE_DELTA,
)


# -- driver-side action checks ------------------------------------------------------------------
def test_a_valid_command_passes_unchanged():
    assert check_command(SPEC, **GOOD).tolist() == [0.1, -0.2, 0.3, 1.0]
    assert check_command(SPEC, **{**GOOD, "units": [], "scale": []}).tolist() == [0.1, -0.2, 0.3, 1.0]  # empty = spec's


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"values": [0.1, float("nan"), 0.0, 0.0]}, "nonfinite"),
        ({"values": [0.1, 0.0, float("inf"), 0.0]}, "nonfinite"),
        ({"values": [0.1, 0.0, 0.0]}, "length"),
        ({"names": ["x", "y", "z", "gripper"]}, "names"),
        ({"names": ["dy", "dx", "dz", "gripper"]}, "names"),
        ({"units": ["mm", "mm", "mm", "1"]}, "units"),
        ({"scale": [0.1, 0.1, 0.1, 1.0]}, "scale"),
        ({"mode": MODE_ABSOLUTE}, "mode"),
        ({"values": [1.5, 0.0, 0.0, 0.0]}, "range"),
    ],
)
def test_bad_commands_are_refused_not_repaired(change, reason):
    with pytest.raises(CommandRejected) as err:
        check_command(SPEC, **{**GOOD, **change})
    assert err.value.reason == reason


def test_inconsistent_specs_are_refused():
    with pytest.raises(ActionSpecError, match="action_scale has 3 entries"):
        ActionSpec(("a", "b", "c", "d"), ("m",) * 4, (1.0,) * 3, (-1.0,) * 4, (1.0,) * 4)
    with pytest.raises(ActionSpecError, match="below action_upper"):
        ActionSpec(("a",), ("m",), (1.0,), (1.0,), (-1.0,))


# -- safety ---------------------------------------------------------------------------------------
def make_filter(max_delta=(0.5, 0.5, 0.5, 2.0)):
    """A filter whose e-stop was heard released (until then it refuses everything)."""
    safety = SafetyFilter(SPEC, max_delta)
    safety.set_estop(False)
    return safety


def test_nan_inf_shape_and_range_give_no_command():
    safety = make_filter()
    for raw, reason in (
        ([np.nan, 0, 0, 0], "nonfinite"),
        ([0, np.inf, 0, 0], "nonfinite"),
        ([0, 0, 0], "shape"),
        ("fast", "shape"),
        ([0, 0, 1.2, 0], "range"),
        ([0, 0, 0, -1.01], "range"),
    ):
        verdict = safety.check(raw)
        assert not verdict.ok and verdict.command is None and verdict.reason == reason, raw
    assert safety.previous.tolist() == [0, 0, 0, 0]  # refused outputs do not move the rate limiter


def test_change_per_step_is_rate_limited_per_dimension():
    safety = make_filter()
    first = safety.check([1.0, -1.0, 0.2, 1.0])
    assert first.ok and first.rate_limited
    assert first.command.tolist() == [0.5, -0.5, 0.2, 1.0]  # gripper's max_delta is 2: not limited
    second = safety.check([1.0, -1.0, 0.2, -1.0])
    assert second.command.tolist() == [1.0, -1.0, 0.2, -1.0] and not second.rate_limited


def test_hold_is_zero_motion_keeping_the_gripper_and_ramps_up_after():
    safety = make_filter()
    safety.check([0.4, 0.4, 0.4, 1.0])
    assert safety.hold().tolist() == [0, 0, 0, 1.0]
    assert safety.check([1.0, 1.0, 1.0, 1.0]).command.tolist() == [0.5, 0.5, 0.5, 1.0]
    safety.reset()  # new episode: from rest, gripper included
    assert safety.hold().tolist() == [0, 0, 0, 0]


def test_estop_blocks_every_command_until_released_and_an_unheard_one_blocks_too():
    safety = SafetyFilter(SPEC, (0.5, 0.5, 0.5, 2.0))
    assert safety.stopped and safety.check([0, 0, 0, 0]).reason == "estop"  # no value heard yet
    assert safety.set_estop(True) and not safety.set_estop(True)
    assert safety.check([0, 0, 0, 0]).reason == "estop"
    assert safety.set_estop(False)
    assert safety.check([0.1, 0, 0, 0]).ok


def test_watchdog_and_stale_stamps():
    dog = Watchdog(0.5)
    assert not dog.expired(100.0)  # never fed: nothing to hold yet
    dog.feed(100.0)
    assert not dog.expired(100.4) and dog.expired(100.6)
    assert is_stale(10.0, 9.0, 0.5) and not is_stale(10.0, 9.8, 0.5)
    assert not is_stale(0.0, 5.0, 0.5)  # ahead of the clock (sim clock not received yet)
    with pytest.raises(SafetyConfigError):
        Watchdog(0.0)
    with pytest.raises(SafetyConfigError, match="max_delta has 3 entries"):
        SafetyFilter(SPEC, [0.5, 0.5, 0.5])
    with pytest.raises(SafetyConfigError, match="positive"):
        SafetyFilter(SPEC, [0.5, 0.0, 0.5, 1.0])


# -- adapters --------------------------------------------------------------------------------------
def test_adapter_mapping():
    values = np.array([1.0, -0.5, 0.0, 0.8])
    linear, angular = adapters.twist(SPEC, values)
    assert np.allclose(linear, [0.8, -0.4, 0.0]) and np.allclose(angular, 0)  # 1 cm per 12.5 ms = 0.8 m/s
    assert np.allclose(adapters.array(SPEC, values), [0.01, -0.005, 0.0, 0.8])
    here = adapters.Pose(np.array([0.1, 0.6, 0.2]), np.array([0.0, 0.0, 0.0, 1.0]))
    target = adapters.pose_target(SPEC, values, here)
    assert np.allclose(target.position, [0.11, 0.595, 0.2]) and np.allclose(target.orientation, [0, 0, 0, 1])
    with pytest.raises(ValueError, match="current end-effector pose"):
        adapters.pose_target(SPEC, values, None)
    assert adapters.cartesian_names(SPEC) == ["dx", "dy", "dz"] and adapters.linear_axes(SPEC) == [0, 1, 2]
    # A DELTA hold sends no Action (a delta of nothing; a per-action sim is not stepped by it).
    assert adapters.hold_outputs(SPEC) == {"twist", "pose", "trajectory"}


def test_adapters_for_a_7d_absolute_and_a_velocity_spec():
    names = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
    absolute = ActionSpec(names, ("m",) * 3 + ("rad",) * 3 + ("1",), (1.0,) * 7, (-4.0,) * 7, (4.0,) * 7, MODE_ABSOLUTE)
    target = adapters.pose_target(absolute, np.array([0.3, 0.1, 0.5, 0.0, 0.0, math.pi / 2, 0.0]), None)
    assert np.allclose(target.position, [0.3, 0.1, 0.5])
    assert np.allclose(target.orientation, [0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)])
    velocity = ActionSpec(("vx", "wz"), ("m/s", "rad/s"), (0.1, 0.5), (-1.0, -1.0), (1.0, 1.0), MODE_VELOCITY)
    linear, angular = adapters.twist(velocity, np.array([1.0, -1.0]))
    assert np.allclose(linear, [0.1, 0, 0]) and np.allclose(angular, [0, 0, -0.5])
    assert adapters.hold_outputs(velocity) == {"twist", "pose", "trajectory", "action", "array"}  # explicit zero rates
    assert adapters.hold_outputs(absolute) == {"twist", "pose"}  # never an absolute zero target


# -- policy backends ---------------------------------------------------------------------------------
def test_random_backend_is_seeded_and_inside_the_limits():
    a = make_backend("random", BackendOptions(SPEC, seed=3))
    b = make_backend("random", BackendOptions(SPEC, seed=3))
    image = np.zeros((64, 64, 3), np.uint8)
    xs = np.array([a.act(PolicyInput(image)) for _ in range(50)])
    assert xs.shape == (50, 4) and (np.abs(xs) <= 1).all()
    assert np.array_equal(xs[0], make_backend("random", BackendOptions(SPEC, seed=3)).act(PolicyInput(image)))
    assert not a.needs_state and b.source == "random"


def test_unknown_backend_and_bad_expert_options_are_one_line_errors():
    with pytest.raises(BackendError, match="unknown policy backend 'learnd'.*expert, learned, random"):
        make_backend("learnd", BackendOptions(SPEC))
    with pytest.raises(BackendError, match="unknown task"):
        make_backend("expert", BackendOptions(SPEC, task="reach-v9"))


def test_a_new_backend_is_one_registered_class():
    @register_backend("constant-test")
    class Constant(PolicyBackend):
        needs_goal = True

        def act(self, inputs):
            return np.full(self.options.spec.dim, 0.25, np.float32)

    backend = make_backend("constant-test", BackendOptions(SPEC))
    assert backend.needs_goal and backend.act(PolicyInput(np.zeros((8, 8, 3), np.uint8))).tolist() == [0.25] * 4


def test_expert_backend_reaches_success_in_the_sim_session_through_the_safety_filter():
    from roboscape_r_ros.runtime.sessions.sim_session import METAWORLD_OBS_NAMES, PERIOD_NS, SimSession

    session = SimSession("reach-v3", resolution=32, seed=0, max_steps=150)
    try:
        expert = make_backend("expert", BackendOptions(SPEC, task="reach-v3"))
        assert expert.needs_state and expert.state_names == METAWORLD_OBS_NAMES
        safety = make_filter()
        frame = session.reset()
        assert frame.time_ns == PERIOD_NS and frame.image.shape == (32, 32, 3) and frame.image.std() > 0
        while not frame.ended:
            verdict = safety.check(expert.act(PolicyInput(frame.image, state=frame.metaworld_obs)))
            frame = session.step(check_command(SPEC, **{**GOOD, "values": verdict.command.tolist()}))
        assert frame.success and not frame.truncated and frame.step < 150
        assert frame.time_ns == (frame.step + 1) * PERIOD_NS
        with pytest.raises(RuntimeError, match="reset first"):
            session.step(np.zeros(4))
        assert session.reset().episode_id.endswith("ep0001")
    finally:
        session.close()
