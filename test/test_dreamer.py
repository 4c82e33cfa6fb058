"""The dreamer: its rclpy-free core (runtime/sessions/dream_session.py) against the WorldModel API, and the node
as a real process (imagine: one world-model step per valid Action, reset service; shadow: prediction
and error beside a stream of real frames; a battery of bad input and bad parameters).

Plumbing only, on a tiny world model with random weights saved with WorldModel.save beside the
synthetic dataset of wm_synthetic (32x32 frames, 4-D Meta-World actions): a train-wm run folder.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.wm_synthetic import HELD_OUT, tiny_run
from roboscape_r_ros.config import load_config
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.runtime.sessions.dream_session import (
    Context,
    ContextPool,
    DreamError,
    DreamSession,
    ShadowMonitor,
    load_world_model,
    side_by_side,
)
from roboscape_r_ros.world_model import WorldModel, WorldModelConfig

NEUTRAL = [0.0, 0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("dreamer"))


@pytest.fixture(scope="module")
def wm(run):
    return load_world_model(run)[0]


# -- the core, without ROS -------------------------------------------------------------------------
def test_session_steps_the_world_model_from_a_held_out_context(run, wm):
    _, info = load_world_model(run)
    pool = ContextPool(wm, info)
    assert (
        pool.episodes.tolist() == HELD_OUT
        and pool.frames.shape == (2, 2, 32, 32, 3)
        and pool.actions.shape == (2, 1, 4)
    )
    session = DreamSession(wm, pool, max_steps=3, done_threshold=1.0)
    first = session.reset()
    arrays = EpisodeDataset.open(info.split["dataset"]).load_arrays()
    e = int(first.context.label.split()[-1])
    np.testing.assert_array_equal(first.image, arrays.frames[arrays.starts[e] + 1])  # the window's last real frame
    assert (first.step, first.episode_id, first.ended, first.context.instruction) == (
        0,
        "dream-ep0000",
        False,
        pool.instructions[HELD_OUT.index(e)],
    )
    # One step = wm.step on the encoded context, action held (frame_skip 1 here).
    state = wm.encode_context(first.context.frames[None], first.context.actions[None])
    action = np.array([0.5, -0.5, 0.0, 1.0], np.float32)
    _, expected, done = wm.step(state, action[None])
    frame = session.step(action)
    np.testing.assert_array_equal(frame.image, expected[0].numpy())
    assert frame.done_probability == pytest.approx(float(done[0])) and frame.step == 1
    # Bad actions raise and leave the state alone: the next good step is the one it would have been.
    for bad in ([math.nan, 0, 0, 0], [0, math.inf, 0, 0], [0, 0, 0], [2.0, 0, 0, 0]):
        with pytest.raises(DreamError):
            session.step(np.array(bad, np.float32))
    twin = DreamSession(wm, max_steps=3, done_threshold=1.0)
    twin.reset(first.context)
    twin.step(action)
    assert np.array_equal(session.step(action).image, twin.step(action).image)
    assert session.step(action).truncated and session.frame.ended and session.frame.step == 3
    with pytest.raises(DreamError, match="reset first"):
        session.step(action)
    assert session.reset().episode_id == "dream-ep0001"


def test_done_above_the_threshold_terminates_and_bad_contexts_are_refused(wm):
    context = Context(np.zeros((2, 32, 32, 3), np.uint8), np.zeros((1, 4), np.float32), "zeros")
    session = DreamSession(wm, done_threshold=0.01)  # a random done head gives ~0.5
    session.reset(context)
    frame = session.step(np.zeros(4, np.float32))
    assert frame.terminated and not frame.truncated
    with pytest.raises(DreamError, match="no context pool"):
        session.reset()
    with pytest.raises(DreamError, match=r"uint8 \[32,32,3\]"):
        session.reset(Context(np.zeros((2, 64, 64, 3), np.uint8), np.zeros((1, 4), np.float32), "big"))
    with pytest.raises(DreamError, match="need actions"):
        session.reset(Context(context.frames, np.zeros((1, 2), np.float32), "2-D"))


def test_contexts_are_frame_skip_apart_with_mean_actions(tmp_path):
    run = tiny_run(tmp_path, "frame_skip=2")
    wm, info = load_world_model(run)
    pool = ContextPool(wm, info)
    arrays = EpisodeDataset.open(info.split["dataset"]).load_arrays()
    start = arrays.starts[HELD_OUT[0]]
    np.testing.assert_array_equal(pool.frames[0], arrays.frames[[start, start + 2]])
    np.testing.assert_allclose(pool.actions[0, 0], arrays.actions[start : start + 2].mean(0), rtol=1e-6)


def test_shadow_monitor_predicts_each_next_real_frame_and_scores_it(run, wm):
    frames = EpisodeDataset.open(load_world_model(run)[1].split["dataset"]).load_arrays().frames[:4]
    a = np.array([0.5, 0.0, 0.0, 0.0], np.float32)
    monitor = ShadowMonitor(wm)
    assert monitor.observe(10, frames[0]) is None and monitor.act(99, a) is None  # answers another frame: ignored
    prediction = monitor.act(10, a)
    assert monitor.act(10, a) is None  # the policy's repeat
    _, expected, _ = wm.step(wm.encode_context(frames[None, :1], np.zeros((1, 0, 4))), a[None])
    np.testing.assert_array_equal(prediction, expected[0].numpy())
    result = monitor.observe(20, frames[1])
    assert result.mse == pytest.approx(((prediction / 255 - frames[1] / 255) ** 2).mean())
    assert result.psnr_db == pytest.approx(10 * math.log10(1 / result.mse), rel=1e-4)
    # The context grows to context_length - 1 = 2 real frames with the action between them.
    second = monitor.act(20, -a)
    _, expected, _ = wm.step(wm.encode_context(frames[None, :2], a[None, None]), -a[None])
    np.testing.assert_array_equal(second, expected[0].numpy())
    # A frame nobody answered breaks the chain: the next one restarts the context, scores nothing.
    assert monitor.observe(30, frames[2]) is not None and monitor.observe(40, frames[3]) is None
    assert len(monitor.frames) == 1 and monitor.prediction is None
    with pytest.raises(DreamError):
        monitor.observe(50, frames[3][:16])


def test_side_by_side_and_checkpoint_errors(tmp_path, wm):
    panels = side_by_side(32, np.full((64, 64, 3), 255, np.uint8), None, np.zeros((32, 32, 3), np.uint8))
    assert panels.shape == (32, 100, 3) and panels[:, :32].min() == 255 and panels[:, 34:66].max() == 0
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 100)
    for path, message in (
        (broken, "not a readable safetensors file"),
        (tmp_path / "nothing", "no world-model checkpoint"),
    ):
        with pytest.raises(RoboscapeError, match=message):
            load_world_model(path)


# -- the node --------------------------------------------------------------------------------------
def test_bad_startup_parameters_are_refused_with_their_reason(ros, run, tmp_path):
    """The dreamer's own checks (world models, action specs, context), in this process; the node's
    process ending with one such line: test_node_parameters."""
    from helpers.ros_harness import startup_error
    from roboscape_r_ros.nodes.dreamer import Dreamer

    broken = tmp_path / "world_model.safetensors"
    broken.write_bytes(b"not a checkpoint")
    cases = [
        ([f"world_model:={tmp_path}"], "not a readable safetensors file"),  # a run folder with a corrupt checkpoint
        (["world_model:=''"], "no world model given"),
        ([f"world_model:={tmp_path / 'missing'}"], "no world-model checkpoint"),
        (["action_names:=[dx,dy]"], "action_units has 4 entries but action_names has 2"),
        (
            ["action_names:=[u,v]", "action_units:=[m,m]", "action_scale:=[1.0,1.0]"],
            "action_names has 2 names, world model",
        ),
        (["context_frames:=5"], "holds 1..2 context frames"),
    ]
    for params, expected in cases:
        assert expected in startup_error(ros, Dreamer, f"world_model:={run}", *params), params


@pytest.fixture
def watch(ros):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32, String

    from roboscape_r_ros.msg import Action, Reward

    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    seen = {name: [] for name in ("observation", "done", "episode", "dream/image", "dream/prediction", "dream/error")}
    for name, kind, qos in (
        ("observation", Image, qos_profile_sensor_data),
        ("done", Reward, reliable),
        ("episode", String, latched),
        ("dream/image", Image, qos_profile_sensor_data),
        ("dream/prediction", Image, qos_profile_sensor_data),
        ("dream/error", Float32, reliable),
    ):
        ros.node.create_subscription(kind, name, seen[name].append, qos)
    seen["action_pub"] = ros.node.create_publisher(Action, "action", reliable)
    seen["observation_pub"] = ros.node.create_publisher(Image, "observation", qos_profile_sensor_data)
    return seen


def test_imagine_mode_steps_once_per_valid_action_refuses_bad_ones_and_resets(ros, run, watch):
    from std_srvs.srv import Trigger

    from helpers.ros_harness import action

    proc = ros.start(
        "roboscape_r_ros.nodes.dreamer",
        "-p",
        f"world_model:={run}",
        "-p",
        "max_steps:=3",
        "-p",
        "done_threshold:=1.0",
        "-p",
        "warning_period_s:=60.0",
        "-p",
        "republish_period_s:=0.3",
    )
    pub = watch["action_pub"]
    assert ros.spin_until(
        lambda: (
            watch["observation"]
            and watch["done"]
            and watch["episode"]
            and watch["dream/image"]
            and pub.get_subscription_count()
        ),
        60,
    ), "no dreamer"
    first = watch["observation"][-1]
    assert (first.encoding, first.width, first.height, first.header.frame_id) == ("rgb8", 32, 32, "dream_camera")
    assert (watch["dream/image"][-1].width, watch["episode"][-1].data) == (100, "dream-ep0000")
    bad = [
        action([math.nan, 0, 0, 0]),
        action([0, math.inf, 0, 0]),
        action([0, 0, 0]),
        action(NEUTRAL, names=["x", "y", "z", "g"]),
        action(NEUTRAL, mode=0),
        action([2, 0, 0, 0]),
        action(NEUTRAL, episode_id="someone-elses"),
    ]
    for a in bad * 3:
        pub.publish(a)
    ros.spin_until(lambda: False, 1.0)  # republishes happen meanwhile: step stays 0
    assert proc.poll() is None and {d.step for d in watch["done"]} == {0}
    for step in (1, 2, 3):
        stamp = watch["done"][-1].header.stamp  # its observation carries the same stamp (and may trail)
        pub.publish(action(NEUTRAL, stamp, episode_id="dream-ep0000"))
        pub.publish(action(NEUTRAL, stamp))  # the policy's repeat for the same frame: no second step
        assert ros.spin_until(
            lambda step=step: watch["done"][-1].step == step or watch["episode"][-1].data != "dream-ep0000", 10
        ), step
    ended = [d for d in watch["done"] if d.done]
    assert len(ended) == 1 and ended[0].truncated and ended[0].step == 3 and ended[0].episode_id == "dream-ep0000"
    assert ros.spin_until(lambda: watch["episode"][-1].data == "dream-ep0001", 5)  # auto reset
    stamps = {(o.header.stamp.sec, o.header.stamp.nanosec) for o in watch["observation"]}
    assert all((d.header.stamp.sec, d.header.stamp.nanosec) in stamps for d in watch["done"][-3:])  # paired by stamp
    client = ros.node.create_client(Trigger, "dream/reset")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(Trigger.Request())
    assert ros.spin_until(future.done, 10) and future.result().message == "dream-ep0002"
    assert ros.spin_until(lambda: watch["episode"][-1].data == "dream-ep0002" and watch["done"][-1].step == 0, 5)
    log = ros.stop(proc)
    warnings = [line for line in log.splitlines() if "refused an action" in line]
    assert len(warnings) == 6, log  # one per kind (NaN and inf share one), throttled
    for expected in ("not all finite", "lengths differ", "names", "mode absolute", "out of range", "someone-elses"):
        assert any(expected in w for w in warnings), expected
    assert "Traceback" not in log


def test_shadow_mode_publishes_prediction_and_error_and_drops_bad_frames(ros, run, watch):
    from helpers.ros_harness import action, image

    proc = ros.start(
        "roboscape_r_ros.nodes.dreamer",
        "-p",
        f"world_model:={run}",
        "-p",
        "mode:=shadow",
        "-p",
        "warning_period_s:=60.0",
    )
    pub, obs = watch["action_pub"], watch["observation_pub"]
    assert ros.spin_until(lambda: pub.get_subscription_count() and obs.get_subscription_count(), 60), "no dreamer"
    ros.spin_until(lambda: False, 0.5)  # discovery both ways
    frames = EpisodeDataset.open(load_world_model(run)[1].split["dataset"]).load_arrays().frames
    short = image(frames[0], 1)
    short.data = short.data[:100]
    bad = [image(frames[0], 1, "yuv422"), image(frames[0][:16], 1), short]
    for msg in bad:
        obs.publish(msg)
    for t in range(1, 5):
        stamp = image(frames[t], t * 10_000_000)
        obs.publish(stamp)
        ros.spin_until(lambda: False, 0.1)
        pub.publish(action([0.5, 0, 0, 0], stamp.header.stamp))
        assert ros.spin_until(lambda t=t: len(watch["dream/prediction"]) >= t, 10), t
    obs.publish(image(frames[5], 50_000_000))
    assert ros.spin_until(lambda: len(watch["dream/error"]) >= 4 and len(watch["dream/image"]) >= 4, 10)
    assert all(0.0 < e.data < 1.0 for e in watch["dream/error"])
    assert [p.header.stamp.nanosec for p in watch["dream/prediction"]] == [
        10_000_000,
        20_000_000,
        30_000_000,
        40_000_000,
    ]
    assert watch["dream/image"][-1].width == 100 and all(
        o.header.frame_id != "dream_camera" for o in watch["observation"]
    )  # never the env
    log = ros.stop(proc)
    assert proc.returncode == 0 and "Traceback" not in log, log
    for expected in ("encoding 'yuv422' is not supported", "data holds", "the world model takes uint8 [32,32,3]"):
        assert expected in log, expected


# -- hot reload ------------------------------------------------------------------------------------
def bad_replacements(folder: Path, run: Path) -> dict[str, tuple[Path, str]]:
    """Files that must not replace the running model (run's: 32 px, 4-D actions, context 3), with why."""
    truncated = folder / "truncated.safetensors"
    truncated.write_bytes((run / "world_model.safetensors").read_bytes()[:4000])
    cases = {"truncated": (truncated, "not a readable safetensors file")}
    for name, override, why in (
        ("action dim", "action_dim=2", "action_dim 2 (running: 4)"),
        ("frame size", "image_size=64", "image_size 64 (running: 32)"),
    ):
        cfg = load_config(
            WorldModelConfig, "world_model", "tiny", ["image_size=32", "action_dim=4", "context_length=3", override]
        )
        WorldModel(cfg).save(folder / f"{name}.safetensors")
        cases[name] = (folder / f"{name}.safetensors", why)
    return cases


def test_a_reload_is_refused_unless_it_fits_and_swaps_in_at_the_next_reset(run, wm, tmp_path):
    from roboscape_r_ros.runtime.sessions.dream_session import load_replacement

    _, info = load_world_model(run)
    session = DreamSession(wm, ContextPool(wm, info), max_steps=10, done_threshold=1.0)
    first = session.reset()
    action = np.array([0.5, -0.5, 0.0, 1.0], np.float32)
    for path, why in bad_replacements(tmp_path, run).values():
        with pytest.raises(DreamError, match=f"reload refused, the old world model keeps running: .*{re.escape(why)}"):
            load_replacement(wm, path)
    torch.manual_seed(1)
    other = WorldModel(wm.cfg)  # fresh weights: other predictions
    other.save(tmp_path / "other.safetensors")
    session.pending, _ = load_replacement(wm, tmp_path / "other.safetensors")
    old_twin, new_twin = DreamSession(wm, done_threshold=1.0), DreamSession(session.pending, done_threshold=1.0)
    old_twin.reset(first.context)
    np.testing.assert_array_equal(
        session.step(action).image, old_twin.step(action).image
    )  # the episode keeps its model
    second = session.reset()
    assert session.wm is not wm and session.pending is None
    new_twin.reset(second.context)
    np.testing.assert_array_equal(session.step(action).image, new_twin.step(action).image)


def test_the_node_refuses_a_bad_reload_keeps_dreaming_and_swaps_a_good_one_at_reset(ros, tmp_path, watch):
    from std_srvs.srv import Trigger

    from helpers.ros_harness import action
    from roboscape_r_ros.files import write_atomic

    live = tiny_run(tmp_path / "live")
    checkpoint = live / "world_model.safetensors"
    cfg = load_world_model(live)[0].cfg
    proc = ros.start(
        "roboscape_r_ros.nodes.dreamer",
        *("-p", f"world_model:={live}", "-p", "max_steps:=2", "-p", "done_threshold:=1.0"),
        *("-p", "reload_check_s:=0.1"),
    )
    pub = watch["action_pub"]
    assert ros.spin_until(lambda: watch["done"] and pub.get_subscription_count(), 60), "no dreamer"
    client = ros.node.create_client(Trigger, "reload_world_model")
    assert client.wait_for_service(timeout_sec=10)

    def reload():
        future = client.call_async(Trigger.Request())
        assert ros.spin_until(future.done, 20)
        return future.result()

    def steps(n: int) -> None:  # n world-model steps, each answering the latest frame of a running episode
        for _ in range(n):
            assert ros.spin_until(lambda: not watch["done"][-1].done, 10)
            last = watch["done"][-1]
            pub.publish(action(NEUTRAL, last.header.stamp, episode_id=last.episode_id))

            def where(msg):
                return msg.episode_id, msg.step

            moved = lambda last=last: where(watch["done"][-1]) != where(last)  # noqa: E731
            assert ros.spin_until(moved, 10)  # republishes keep both: only a step changes them

    write_atomic(checkpoint, checkpoint.read_bytes()[:4000])  # truncated: the watch refuses it, and so does the service
    ros.spin_until(lambda: False, 0.6)
    answer = reload()
    assert not answer.success and "reload refused, the old world model keeps running" in answer.message
    steps(3)  # the old model keeps dreaming (one episode of 2 steps ends, the next begins)
    torch.manual_seed(1)
    WorldModel(cfg).save(checkpoint)  # a good one, fresh weights
    ros.spin_until(lambda: False, 0.6)  # the watch stages it; the service stages it again
    answer = reload()
    assert answer.success and "at the next episode reset" in answer.message
    steps(2)  # dream-ep0001 ends at its 2nd step; its reset takes the new model, which makes ep0002's 1st step
    assert (watch["done"][-1].episode_id, watch["done"][-1].step) == ("dream-ep0002", 1)
    log = ros.stop(proc)
    refusals = [line for line in log.splitlines() if "reload refused" in line]
    assert len(refusals) == 2 and all("not a readable safetensors file" in line for line in refusals), log
    assert "swapped in at episode dream-ep0002" in log and "Traceback" not in log, log


# -- runtime onnx ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_exported_pieces_dream_and_shadow_as_torch_does(tmp_path):
    from roboscape_r_ros.export.world_model import export_world_model
    from roboscape_r_ros.runtime.sessions.dream_session import describe

    run = tiny_run(tmp_path)
    with pytest.raises(RoboscapeError, match="export it: roboscape-r export world_model="):
        load_world_model(run, runtime="onnx")
    export_world_model(run, perceptual_resolution=None)  # into <run>/onnx, where runtime auto finds it
    wm, info = load_world_model(run)
    runner, _ = load_world_model(run, runtime="auto")
    assert describe(runner) == "onnx on CPUExecutionProvider" and describe(wm) == "torch on torch:cpu"
    session = DreamSession(runner, ContextPool(runner, info), max_steps=3, done_threshold=1.0)
    twin = DreamSession(wm, done_threshold=1.0)
    twin.reset(session.reset().context)
    for action in np.random.default_rng(0).uniform(-1, 1, (3, 4)).astype(np.float32):
        found, expected = session.step(action), twin.step(action)
        assert np.abs(found.image.astype(int) - expected.image).max() <= 1
        assert found.done_probability == pytest.approx(expected.done_probability, abs=1e-5)
    frames = EpisodeDataset.open(info.split["dataset"]).load_arrays().frames[:3]
    monitors = ShadowMonitor(runner), ShadowMonitor(wm)
    a = np.array([0.5, 0.0, 0.0, 0.0], np.float32)
    for t, frame in enumerate(frames):
        results = [m.observe(t, frame) for m in monitors]
        if t:
            assert results[0].mse == pytest.approx(results[1].mse, abs=1e-4)
        predictions = [m.act(t, a) for m in monitors]
        assert np.abs(predictions[0].astype(int) - predictions[1]).max() <= 1
    torch.manual_seed(1)
    WorldModel(wm.cfg).save(info.checkpoint)  # a new checkpoint, not exported again: its pieces are stale
    with pytest.raises(RoboscapeError, match="exported from another checkpoint"):
        load_world_model(run, runtime="onnx")


def test_the_node_says_which_runtime_dreams(ros, tmp_path, watch):
    from roboscape_r_ros.export.world_model import export_world_model

    run = tiny_run(tmp_path)
    export_world_model(run, perceptual_resolution=None)
    proc = ros.start("roboscape_r_ros.nodes.dreamer", "-p", f"world_model:={run}", "-p", "runtime:=onnx")
    assert ros.spin_until(lambda: watch["observation"] and watch["done"], 60), "no dreamer"
    log = ros.stop(proc)
    assert "onnx on CPUExecutionProvider" in log and "Traceback" not in log, log
