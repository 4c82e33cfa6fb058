"""policy_controller as a real process: one complete Action (and adapter messages) per observation,
and a bad-input battery: bad frames, stale stamps, bad state, missing goal, watchdog, e-stop and
bad parameters. The test harness plays camera, arm and operator."""

import math
import time

import numpy as np
import pytest

msg = pytest.importorskip("roboscape_r_ros.msg")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Bool, String  # noqa: E402

from helpers.policy_rig import Rig, camera_image  # noqa: E402
from helpers.ros_harness import LATCHED, RELIABLE_50  # noqa: E402
from roboscape_r_ros.nodes.messaging import time_ns  # noqa: E402
from roboscape_r_ros.runtime.sessions.sim_session import METAWORLD_OBS_NAMES  # noqa: E402

CONTROLLER = "roboscape_r_ros.nodes.policy_controller"


def test_one_complete_action_per_observation_and_the_adapter_messages(ros):
    ros.start(
        CONTROLLER,
        "--params-file",
        "config/policy_controller.yaml",
        "-p",
        "backend:=random",
        "-p",
        "stale_after_s:=5.0",
        "-p",
        "publish_pose:=true",
        "-p",
        "publish_twist:=true",
        "-p",
        "publish_array:=true",
    )
    rig = Rig(ros)
    rig.episode_pub.publish(String(data="ep-test"))
    pose = PoseStamped()
    pose.pose.position.x, pose.pose.position.y, pose.pose.position.z, pose.pose.orientation.w = 0.1, 0.6, 0.2, 1.0
    rig.warm_up()  # the first answers may come before ee_pose and episode arrived
    ros.spin_until(lambda: False, 0.3, tick=lambda: rig.pose_pub.publish(pose))
    obs = camera_image(rig.now())
    a = rig.answer(obs)
    assert a.names == ["dx", "dy", "dz", "gripper"] and a.units == ["m", "m", "m", "1"]
    assert list(a.scale) == [0.01, 0.01, 0.01, 1.0] and list(a.lower) == [-1.0] * 4 and list(a.upper) == [1.0] * 4
    assert a.mode == msg.Action.MODE_DELTA and (a.duration.sec, a.duration.nanosec) == (0, 12_500_000)
    assert a.header.stamp == obs.header.stamp and a.header.frame_id == "world"
    assert a.episode_id == "ep-test" and a.source == "random"
    values = np.array(a.values)
    assert values.shape == (4,) and np.isfinite(values).all() and (np.abs(values) <= 1).all()
    # The same frame again (a sim waiting for its action) gets the same Action again, never a new
    # one; a new stamp is the next step.
    seen = len(rig.actions)
    rig.quiet(0.5, tick=lambda: rig.obs_pub.publish(obs))
    assert len(rig.actions) > seen and all(again == a for again in rig.actions[seen:])
    assert rig.answer(camera_image(rig.now())).step == a.step + 1
    # Adapters (contract/adapters.py): each message of the action answering `obs`.
    assert ros.spin_until(lambda: all(rig.out[t] for t in rig.out if t != "cmd_trajectory"), 5)
    twist = next(m for m in rig.out["cmd_twist"] if m.header.stamp == obs.header.stamp)
    assert np.allclose([twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z], values[:3] * 0.01 / 0.0125)
    array = next(m for m in rig.out["cmd_array"] if np.allclose(m.data, values * [0.01, 0.01, 0.01, 1.0]))
    assert array.layout.dim[0].label == "dx,dy,dz,gripper"
    target = next(m for m in rig.out["cmd_pose"] if m.header.stamp == obs.header.stamp)
    assert np.allclose(
        [target.pose.position.x, target.pose.position.y, target.pose.position.z], [0.1, 0.6, 0.2] + values[:3] * 0.01
    )


def test_bad_frames_stale_stamps_and_bad_state_give_no_action_and_one_warning_each(ros):
    proc = ros.start(
        CONTROLLER,
        "--params-file",
        "config/policy_controller.yaml",
        "-p",
        "backend:=expert",
        "-p",
        "warning_period_s:=60.0",
        "-p",
        "stale_after_s:=0.3",
    )
    rig = Rig(ros)
    state = np.random.default_rng(1).uniform(-0.2, 0.8, 39)

    def state_msg(stamp, values=state, names=METAWORLD_OBS_NAMES):
        m = JointState(name=list(names), position=[float(v) for v in values])
        m.header.stamp = stamp
        return m

    def good_pair():
        stamp = rig.now()
        rig.state_pub.publish(state_msg(stamp))
        return camera_image(stamp)

    assert ros.spin_until(
        lambda: rig.actions, 30.0, tick=lambda: rig.obs_pub.publish(good_pair())
    )  # the expert answers with a state
    rig.quiet(0.8)  # answers to the other warm-up frames, then the watchdog's hold
    wrong_encoding = good_pair()
    wrong_encoding.encoding = "yuv422"
    stale = camera_image(rig.now())
    stale.header.stamp.sec -= 10
    unstamped = camera_image(rig.now())
    unstamped.header.stamp.sec, unstamped.header.stamp.nanosec = 0, 0
    nan_state_stamp = rig.now()
    nan_state_stamp.sec += 1  # well apart from every other stamp (and ahead of the clock: not stale)
    nan_state = state.copy()
    nan_state[5] = math.nan
    rig.state_pub.publish(state_msg(nan_state_stamp, nan_state))
    rig.state_pub.publish(state_msg(rig.now(), state[:30], METAWORLD_OBS_NAMES[:30]))  # names missing
    no_state = camera_image(nan_state_stamp)  # its state was refused: nothing to act on
    seen = len(rig.actions)
    for _ in range(10):
        for bad in (wrong_encoding, stale, unstamped, no_state):
            rig.obs_pub.publish(bad)
        ros.spin_until(lambda: False, 0.03)
    rig.quiet(1.0)
    assert all(a.source == "hold:watchdog" for a in rig.actions[seen:]), [
        a.source for a in rig.actions[seen:]
    ]  # no policy action
    assert proc.poll() is None
    rig.answer(good_pair())  # still acting on good input
    log = ros.stop(proc)
    warnings = [line for line in log.splitlines() if "WARN" in line]
    for expected in (
        "encoding 'yuv422' is not supported",
        "stale observation: its stamp is 10 s old",
        "NaN or inf positions",
        "missing ['goal_x'",
        "without a state stamped like it",
    ):
        assert sum(expected in w for w in warnings) == 1, (expected, log)
    assert any("same clock? use_sim_time" in w for w in warnings)  # the unstamped frame: a clock hint
    assert "Traceback" not in log


def test_watchdog_holds_once_and_estop_holds_until_released(ros):
    """A hold in DELTA mode: no Action (a delta of nothing), a zero twist, the current pose as the
    pose target; once, then nothing until fresh frames (watchdog) or the release (e-stop)."""
    # stale_after_s leaves room for a loaded 2-core CI machine to miss a few 20 Hz frames
    proc = ros.start(
        CONTROLLER,
        "-p",
        "backend:=random",
        "-p",
        "stale_after_s:=1.0",
        "-p",
        "max_delta:=[2.0, 2.0, 2.0, 2.0]",
        "-p",
        "publish_twist:=true",
        "-p",
        "publish_pose:=true",
    )
    rig = Rig(ros)
    here = PoseStamped()
    here.pose.position.x, here.pose.position.y, here.pose.position.z, here.pose.orientation.w = 0.1, 0.6, 0.2, 1.0

    def stream():  # a camera at ~20 Hz, and the arm's pose
        rig.obs_pub.publish(camera_image(rig.now()))
        rig.pose_pub.publish(here)

    def is_hold(twist) -> bool:
        return twist.twist.linear.x == twist.twist.linear.y == twist.twist.linear.z == 0.0

    twists, poses = rig.out["cmd_twist"], rig.out["cmd_pose"]
    rig.warm_up()
    assert rig.quiet(0.6, tick=stream) > 3 and twists and not any(is_hold(t) for t in twists)

    def at_hand(pose) -> bool:  # hold: the target is where the hand is
        p = pose.pose.position
        return (p.x, p.y, p.z) == (0.1, 0.6, 0.2)

    # The camera stops: within ~stale_after_s one hold, then silence. The hold's twist and pose
    # travel on two topics: either may land first.
    assert ros.spin_until(lambda: is_hold(twists[-1]) and at_hand(poses[-1]), 4.0)
    assert sum(map(is_hold, twists)) == 1
    n_twists = len(twists)
    assert rig.quiet(1.0) == 0 and len(twists) == n_twists  # then silence, and never an Action
    assert rig.quiet(0.5, tick=stream) > 3  # fresh frames: acting again
    # E-stop: one hold, nothing while engaged although frames keep coming, actions after release.
    rig.estop_pub.publish(Bool(data=True))
    assert ros.spin_until(lambda: is_hold(twists[-1]), 3.0, tick=stream)
    # Counted by stamp: a command that answered a frame before the hold may still be on its way (each
    # topic keeps its own order, not the order between topics).
    engaged = time_ns(rig.now())
    rig.quiet(1.0, tick=stream)
    while_engaged = [m for m in [*rig.actions, *twists] if time_ns(m.header.stamp) >= engaged]
    assert not while_engaged and sum(map(is_hold, twists)) == 2
    rig.estop_pub.publish(Bool(data=False))
    assert ros.spin_until(
        lambda: rig.actions[-1].source == "random" and rig.quiet(0.3, tick=stream) > 0, 5.0, tick=stream
    )
    log = ros.stop(proc)
    assert "E-STOP engaged" in log and "e-stop released" in log and "holding the arm" in log and "Traceback" not in log


def test_an_estop_latched_before_the_controller_started_holds_it_until_released(ros):
    """A controller (re)started while the e-stop is engaged, e.g. by a supervisor after a crash:
    an e-stop published latched (transient local) reaches it, and it sends nothing until released.
    A volatile publisher keeps working (the other tests)."""
    rig = Rig(ros, estop_released=False)
    latched_estop = ros.node.create_publisher(Bool, "estop", LATCHED)
    latched_estop.publish(Bool(data=True))
    proc = ros.start(CONTROLLER, "-p", "backend:=random", "-p", "max_delta:=[2.0, 2.0, 2.0, 2.0]")
    assert ros.spin_until(
        lambda: latched_estop.get_subscription_count() > 0 and rig.obs_pub.get_subscription_count() > 0, 30
    )
    ros.spin_until(lambda: False, 1.0)  # the latched value is delivered on matching

    def stream():
        rig.obs_pub.publish(camera_image(rig.now()))

    assert rig.quiet(3.0, tick=stream) == 0
    latched_estop.publish(Bool(data=False))
    assert ros.spin_until(lambda: rig.actions, 10.0, tick=stream)
    log = ros.stop(proc)
    assert "E-STOP engaged" in log and "incompatible" not in log and "Traceback" not in log, log


def test_nothing_moves_until_the_estop_state_is_heard(ros):
    """A (re)started controller may get camera frames before the latched e-stop's value (discovery
    order is not fixed), and a graph may have no e-stop at all: with default parameters it sends
    nothing until a value arrived on estop, and says so once, naming the topic."""
    proc = ros.start(CONTROLLER, "-p", "backend:=random")
    rig = Rig(ros, estop_released=False)

    def stream():
        rig.obs_pub.publish(camera_image(rig.now()))

    assert ros.spin_until(lambda: rig.obs_pub.get_subscription_count() > 0, 30)
    assert rig.quiet(3.0, tick=stream) == 0
    rig.estop_pub.publish(Bool(data=False))  # released: the state is known
    assert ros.spin_until(lambda: rig.actions, 10.0, tick=stream)
    log = ros.stop(proc)
    assert log.count("no value heard on /estop yet: no command") == 1 and "Traceback" not in log, log
    assert "e-stop not engaged (/estop): commands allowed" in log, log


def test_a_simulator_that_waited_through_a_hold_gets_its_frame_answered(ros):
    """Sim time stands still while a simulator waits for the action of its frame and re-sends that
    frame; after a watchdog hold (a stall under load) the controller must answer it again."""
    from rosgraph_msgs.msg import Clock

    proc = ros.start(CONTROLLER, "-p", "backend:=random", "-p", "stale_after_s:=0.5", "-p", "use_sim_time:=true")
    rig = Rig(ros)
    clock_pub = ros.node.create_publisher(Clock, "/clock", RELIABLE_50)
    frozen = Clock(clock=rig.now())  # the sim's time: it advances only when the sim steps
    frame = camera_image(frozen.clock)

    def sim_waiting():
        clock_pub.publish(frozen)
        rig.obs_pub.publish(frame)

    assert ros.spin_until(lambda: rig.actions, 30, tick=sim_waiting), "no action"
    ros.spin_until(lambda: False, 1.5, tick=lambda: clock_pub.publish(frozen))  # the stall: no frames
    answered = len([a for a in rig.actions if a.header.stamp == frame.header.stamp])
    assert ros.spin_until(
        lambda: len([a for a in rig.actions if a.header.stamp == frame.header.stamp]) > answered, 5, tick=sim_waiting
    ), "the re-sent frame was never answered after the hold"
    log = ros.stop(proc)
    assert "holding the arm" in log and "fresh observations again: resuming" in log and "Traceback" not in log, log


def test_no_action_without_a_goal_when_one_is_required(ros):
    proc = ros.start(CONTROLLER, "-p", "backend:=random", "-p", "require_goal:=true", "-p", "warning_period_s:=60.0")
    rig = Rig(ros)
    stream = lambda: rig.obs_pub.publish(camera_image(rig.now()))  # noqa: E731
    ros.spin_until(lambda: rig.obs_pub.get_subscription_count() > 0, 20)
    assert rig.quiet(1.5, tick=stream) == 0
    rig.goal_pub.publish(camera_image(rig.now()))  # latched: arrives even though published once
    assert ros.spin_until(lambda: len(rig.actions) > 0, 10, tick=stream)
    log = ros.stop(proc)
    assert log.count("no goal image yet") == 1 and "goal image received (64x64)" in log, log


@pytest.mark.parametrize(
    "params, expected",
    [
        (["backend:=learnd"], "unknown policy backend 'learnd'"),
        (["backend:=expert", "task:=reach-v9"], "unknown task 'reach-v9'"),
        (["action_scale:=[0.01, 0.01]"], "action_scale has 2 entries"),
        (["max_delta:=[0.5]"], "max_delta has 1 entries"),
        (["action_mode:=jerk"], "action_mode"),
        (["stale_after_s:=0.0"], "stale_after_s"),
        (["action_mode:=velocity", "publish_pose:=true"], "publish_pose: a pose target cannot carry velocities"),
        (["publish_trajectory:=true"], "publish_trajectory: dx, dy, dz are Cartesian axes, not joints"),
        (
            ["publish_twist:=true", "frame_id:=''"],
            "publish_twist: MoveIt Servo would refuse it: header.frame_id is empty",
        ),
        (["backend:=learned", "checkpoint:=/nowhere/policy.safetensors"], "no such policy checkpoint"),
        (["backend:=learned", "runtime:=onnx", "checkpoint:=/x/policy.safetensors"], "export this checkpoint first"),
        (["learning.enabled:=true"], "learning mode trains the learned backend (backend:=learned), not 'random'"),
        (["goal_image_file:=/nowhere/goal.png"], "policy_controller: goal_image_file: "),
    ],
)
def test_bad_startup_parameters_are_refused_with_their_reason(ros, params, expected):
    """policy_controller's own checks (backends, action specs, adapters, checkpoints, goal files), in this
    process; the node's process ending with one such line: test_node_parameters."""
    from helpers.ros_harness import startup_error
    from roboscape_r_ros.nodes.policy_controller import PolicyController

    assert expected in startup_error(ros, PolicyController, *params)


def small_policy(seed: int):
    torch = pytest.importorskip("torch")
    from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig

    torch.manual_seed(seed)
    policy = ImagePolicy(PolicyConfig(image_size=64, channels=[8, 8], hidden=16))
    with torch.no_grad():
        policy.actor_mean.weight.normal_(0.0, 0.5)  # a mean far enough from 0 to tell policies apart
    return policy


def expected_action(policy_file, obs: Image, goal: Image) -> np.ndarray:
    from roboscape_r_ros.runtime.inference.runners import open_policy_runner

    frame = np.frombuffer(obs.data, np.uint8).reshape(1, 64, 64, 3)
    target = np.frombuffer(goal.data, np.uint8).reshape(1, 64, 64, 3)
    return np.clip(open_policy_runner(policy_file).mean(frame, target)[0, 0], -1, 1)


def inverted(frame: Image) -> Image:
    frame.data = bytes(255 - b for b in frame.data)
    return frame


def test_the_learned_backend_drives_from_an_exported_onnx_policy(ros, tmp_path):
    from roboscape_r_ros.export.policy import export_policy

    policy = small_policy(0)
    onnx_file = export_policy(policy.save(tmp_path / "policy.safetensors"), tmp_path / "policy.onnx").path
    proc = ros.start(CONTROLLER, "-p", "backend:=learned", "-p", f"checkpoint:={onnx_file}", "-p", "stale_after_s:=5.0")
    rig = Rig(ros)
    goal = inverted(camera_image(rig.now()))
    rig.goal_pub.publish(goal)
    rig.warm_up()
    obs = camera_image(rig.now())
    a = rig.answer(obs)
    np.testing.assert_allclose(a.values, expected_action(onnx_file, obs, goal), atol=1e-5)
    assert a.source == "learned"
    log = ros.stop(proc)
    assert "backend 'learned' (onnx on CPUExecutionProvider)" in log, log


def test_a_bad_hot_reload_is_refused_and_the_old_policy_keeps_driving(ros, tmp_path):
    from std_srvs.srv import Trigger

    from roboscape_r_ros.files import write_atomic

    live = tmp_path / "live.safetensors"
    first, second = small_policy(0), small_policy(1)
    first.save(live)
    kept = first.save(tmp_path / "first.safetensors")
    proc = ros.start(
        CONTROLLER,
        *("-p", "backend:=learned", "-p", f"checkpoint:={live}", "-p", "stale_after_s:=5.0"),
        *("-p", "reload_check_s:=0.1"),
    )
    rig = Rig(ros)
    goal = inverted(camera_image(rig.now()))
    rig.goal_pub.publish(goal)
    rig.warm_up()
    client = ros.node.create_client(Trigger, "reload_policy")
    assert client.wait_for_service(timeout_sec=10)

    def answered_by(policy_file) -> bool:
        obs = camera_image(rig.now())
        return np.allclose(rig.answer(obs).values, expected_action(policy_file, obs, goal), atol=1e-5)

    assert answered_by(kept)
    write_atomic(live, live.read_bytes()[:5000])  # a truncated copy: the watch sees it, refuses it once
    rig.quiet(0.6, tick=lambda: rig.obs_pub.publish(camera_image(rig.now())))
    future = client.call_async(Trigger.Request())  # the service refuses it too, with the same line
    assert ros.spin_until(future.done, 10) and not future.result().success
    assert "reload refused, the old policy keeps running" in future.result().message
    assert answered_by(kept)  # the old policy still drives
    replacement = second.save(tmp_path / "second.safetensors")
    second.save(live)  # a good one: swapped in by the watch between two decisions
    deadline = time.monotonic() + 10
    while not answered_by(replacement):
        assert time.monotonic() < deadline, "the replaced policy never answered"
    log = ros.stop(proc)
    refusals = [line for line in log.splitlines() if "reload refused" in line]
    assert len(refusals) == 2 and all("not a readable safetensors file" in line for line in refusals), log
    assert "policy reloaded: " in log, log


def test_the_out_of_domain_guard_holds_while_dream_error_stays_high(ros):
    from std_msgs.msg import Float32

    proc = ros.start(
        CONTROLLER,
        *("-p", "backend:=random", "-p", "stale_after_s:=5.0", "-p", "action_mode:=velocity"),
        *("-p", "ood_guard.threshold:=0.01", "-p", "ood_guard.trip_after:=2", "-p", "ood_guard.release_after:=3"),
    )
    rig = Rig(ros)
    error_pub = ros.node.create_publisher(Float32, "dream/error", RELIABLE_50)
    rig.warm_up()
    ros.spin_until(lambda: error_pub.get_subscription_count() > 0, 10)
    for value in (0.05, 0.002, 0.05, 0.05):  # the low one restarts the count: the fourth trips it
        error_pub.publish(Float32(data=value))
    assert ros.spin_until(lambda: any(a.source == "hold:ood" for a in rig.actions), 10)
    hold = next(a for a in rig.actions if a.source == "hold:ood")
    assert list(hold.values[:3]) == [0.0] * 3  # velocity mode: zero motion (the gripper, hold_last, kept)
    assert rig.quiet(1.0, tick=lambda: rig.obs_pub.publish(camera_image(rig.now()))) == 0  # fresh frames, no commands
    for _ in range(3):
        error_pub.publish(Float32(data=0.004))
    seen = len(rig.actions)
    stream = lambda: rig.obs_pub.publish(camera_image(rig.now()))  # noqa: E731
    assert ros.spin_until(lambda: len(rig.actions) > seen, 10, tick=stream)  # commands resume
    log = ros.stop(proc)
    assert log.count("out-of-domain guard: dream/error above 0.01 for 2 predictions") == 1, log
    assert "commands resume" in log, log


def test_a_guard_hold_that_lasts_hold_timeout_s_ends_the_episode_until_a_new_one(ros):
    """A held sim arm makes no new frames, so no error ever releases the hold: the timeout ends the
    episode, the arm stays still whatever dream/error says, and the next episode starts afresh."""
    from std_msgs.msg import Float32

    proc = ros.start(
        CONTROLLER,
        *("-p", "backend:=random", "-p", "stale_after_s:=5.0", "-p", "ood_guard.threshold:=0.01"),
        *("-p", "ood_guard.trip_after:=1", "-p", "ood_guard.release_after:=1", "-p", "ood_guard.hold_timeout_s:=1.0"),
    )
    rig = Rig(ros)
    error_pub = ros.node.create_publisher(Float32, "dream/error", RELIABLE_50)
    stream = lambda: rig.obs_pub.publish(camera_image(rig.now()))  # noqa: E731
    rig.episode_pub.publish(String(data="ep-1"))
    rig.warm_up()
    ros.spin_until(lambda: error_pub.get_subscription_count() > 0, 10)
    error_pub.publish(Float32(data=0.5))
    assert ros.spin_until(lambda: rig.quiet(0.3, tick=stream) == 0, 10, tick=stream)  # held
    rig.quiet(1.5, tick=stream)  # past hold_timeout_s
    error_pub.publish(Float32(data=0.0))  # in domain again: it would release a hold, not an ended episode
    assert rig.quiet(1.0, tick=stream) == 0
    rig.episode_pub.publish(String(data="ep-2"))
    assert ros.spin_until(lambda: rig.actions[-1].episode_id == "ep-2", 10, tick=stream)  # moving again
    log = ros.stop(proc)
    assert log.count("out-of-domain guard: held for 1 s: episode ep-1 ended; the arm stays still") == 1, log
    assert "/reset is not available: waiting for a new episode" in log, log
    assert "a new episode ends its hold" in log and "Traceback" not in log, log
