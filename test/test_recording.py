"""camera_ingest's episode recording: the rclpy-free recorder (runtime/sessions/recording.py) on a scripted stream,
then sim_bridge + camera_ingest (recording) + policy_controller (Meta-World expert) as real processes:
the dataset written at Ctrl-C holds each episode's frames with exactly the actions the controller sent,
the sim's state streams under their names and the physical commands."""

import re
import time

import numpy as np
import pytest

from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.runtime.sessions.recording import EpisodeRecorder, RecordingError

NAMES = ["dx", "dy", "dz", "gripper"]


def recorder(root, **changes):
    options = dict(
        task="reach-v3",
        instruction="Reach the goal.",
        kind="expert",
        fps=80,
        camera="corner2",
        image_shape=(8, 8, 3),
        action_names=NAMES,
    )
    return EpisodeRecorder(root, **{**options, **changes})


def frame(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


def test_the_recorder_pairs_frames_with_their_actions_and_splits_episodes(tmp_path):
    rec = recorder(tmp_path / "data")

    def act(stamp, source="expert", names=NAMES, episode=""):
        return rec.action(stamp, names, [stamp / 100, 0, 0, 1], source, episode)

    for stamp in (10, 20):  # before the latched episode id arrived: they belong to the episode it names
        rec.observation(stamp, frame(stamp))
        assert act(stamp) is None
    rec.episode("A")
    rec.observation(20, frame(99))  # a frame published again: ignored (its answer, too)
    assert act(20) == "repeat"
    rec.observation(30, frame(30))
    assert rec.action(30, NAMES, [np.nan, 0, 0, 0]) == "nonfinite"  # not recorded; the frame waits on
    assert rec.action(30, ["x", "y", "z", "g"], [0, 0, 0, 0]) == "names"
    assert act(30) is None
    assert act(35) == "unmatched"  # answers no frame seen
    assert act(0, source="hold:watchdog") == "hold"
    rec.success()  # reported after the step from frame 30: frame 40 shows the success
    rec.observation(40, frame(40))
    rec.episode("B")  # the next episode begins before the answer to A's final frame arrived
    rec.observation(50, frame(50))
    assert act(40) is None  # still episode A's
    rec.observation(60, frame(60))  # never answered
    assert act(50) is None  # the first answer in B writes A
    assert [(e.episode_id, e.frames, e.success) for e in rec.written] == [("A", 4, True)]
    # C's first frame overtakes C's id; the controller answers it for B, then again for C (policy_controller.on_episode)
    rec.observation(70, frame(70))
    rec.episode("C")
    assert act(70, episode="B") is None and act(70, episode="B") == "repeat"
    assert rec.action(70, NAMES, [0.7, 0, 0, -1], "expert", "C") is None  # moved to C, with the action the sim executed
    summary = rec.close()
    assert [(e.episode_id, e.frames) for e in rec.written] == [("A", 4), ("B", 1), ("C", 1)]
    assert (summary.episodes, summary.frames) == (3, 6)
    assert dict(rec.counts) == {"frames": 7, "nonfinite": 1, "names": 1, "unmatched": 1, "episodes": 3, "unanswered": 1}
    dataset = EpisodeDataset.open(tmp_path / "data")
    a, b = dataset.episode(0), dataset.episode(1)
    assert a.frames[:, 0, 0, 0].tolist() == [10, 20, 30, 40] and b.frames[:, 0, 0, 0].tolist() == [50]
    assert a.actions[:, 0].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4]) and a.actions.dtype == np.float32
    assert a.success and a.done.tolist()[-1] == 1.0 and a.done[0] < 0.1 and not b.success and b.done.tolist() == [0.0]
    assert a.states[:, 0].tolist() == pytest.approx([0.0, 1e-8, 2e-8, 3e-8])  # time_s since the episode's first frame
    assert (a.states[:, 1] >= 0).all() and a.states[:, 1].max() < 5  # answer_delay_s
    assert (a.task, a.instruction, a.kind) == ("reach-v3", "Reach the goal.", "expert")
    assert dataset.episode(2).actions.tolist() == [[pytest.approx(0.7), 0.0, 0.0, -1.0]]


def test_an_answer_under_the_previous_id_to_a_frame_that_came_after_the_new_id_waits_for_its_own(tmp_path):
    """The controller took the new episode's first frame before its id (camera_ingest had the id first):
    that answer is not the one the sim executes, so the frame waits for the answer under its own id;
    stopped before it comes, the frame is unanswered, never written into the episode before."""
    rec = recorder(tmp_path / "data")
    rec.episode("A")
    for stamp in (10, 20):
        rec.observation(stamp, frame(stamp))
        assert rec.action(stamp, NAMES, [0, 0, 0, 1], "expert", "A") is None
    rec.episode("B")
    rec.observation(30, frame(30))
    assert rec.action(30, NAMES, [0.3, 0, 0, 1], "expert", "A") == "earlier episode"
    assert rec.action(30, NAMES, [0.5, 0, 0, 1], "expert", "B") is None
    rec.episode("C")
    rec.observation(40, frame(40))
    assert rec.action(40, NAMES, [0, 0, 0, 1], "expert", "B") == "earlier episode"
    rec.close()  # Ctrl-C before the answer under C
    assert [(e.episode_id, e.frames) for e in rec.written] == [("A", 2), ("B", 1)]
    assert rec.counts["unanswered"] == 1 and rec.counts["earlier episode"] == 2
    assert EpisodeDataset.open(tmp_path / "data").episode(1).actions[:, 0].tolist() == [pytest.approx(0.5)]


def test_a_success_flag_that_arrives_after_the_next_episode_id_still_labels_its_own_episode(tmp_path):
    rec = recorder(tmp_path / "data")
    for stamp in (10, 20):
        rec.observation(stamp, frame(stamp))
        assert rec.action(stamp, NAMES, [0, 0, 0, 1], "expert", "A") is None
    rec.episode("B")  # the sim ended A at its success frame 20 and reset; the id came first
    rec.success()  # A's flag, late: frame 20 itself shows the success
    rec.observation(30, frame(30))
    assert rec.action(30, NAMES, [0, 0, 0, 1], "expert", "B") is None
    rec.close()
    assert [(e.episode_id, e.frames, e.success) for e in rec.written] == [("A", 2, True), ("B", 1, False)]
    assert EpisodeDataset.open(tmp_path / "data").episode(0).done.tolist()[-1] == 1.0


def test_state_streams_are_held_onto_frames_and_stale_or_missing_frames_dropped_and_counted(tmp_path):
    from roboscape_r_ros.data.message_values import JOINT_STATE, POSE

    ms = 1_000_000
    rec = recorder(tmp_path / "data", states=[("/arm/joint_states", JOINT_STATE), ("/arm/ee_pose", POSE)])
    facts = {"units": ("m", "m", "m", "1"), "scale": (0.01, 0.01, 0.01, 1.0), "mode": 1, "period_s": 0.0125}
    pose_names = ("x", "y", "z", "qx", "qy", "qz", "qw")
    assert rec.state("/arm/joint_states", 5 * ms, ["j1", "j2"], [0.5, 0.6]) is None
    for t in (10, 20, 30, 40, 300):
        rec.observation(t * ms, frame(t % 256))
        if t != 300:  # frame 300: the last joint state (at 30 ms) is stale
            assert rec.state("/arm/joint_states", t * ms, ["j1", "j2"], [t, -t]) is None
        if t >= 20:  # frame 10: no pose yet (missing)
            assert rec.state("/arm/ee_pose", t * ms - ms // 2, pose_names, [t, 0, 0, 0, 0, 0, 1]) is None
        assert rec.action(t * ms, NAMES, [t / 100, 0.5, 0, 1], "expert", "A", facts) is None
    # bad state messages are not kept, and counted per topic
    assert rec.state("/arm/joint_states", 20 * ms, ["j1", "j2"], [9, 9]) == "order"
    assert rec.state("/arm/joint_states", 400 * ms, ["j1"], [9]) == "names"
    assert rec.state("/arm/ee_pose", 400 * ms, pose_names, [np.nan, 0, 0, 0, 0, 0, 1]) == "nonfinite"
    rec.observation(310 * ms, frame(1))
    assert rec.action(310 * ms, NAMES, [0.1, 0, 0, 1], "expert", "A", {**facts, "scale": (0.02,) * 4}) == "spec"
    summary = rec.close()
    assert summary.frames == 3  # 20, 30, 40 of the five answered frames
    assert rec.dropped == {"/arm/ee_pose missing": 1, "/arm/joint_states stale": 1}
    dataset = EpisodeDataset.open(tmp_path / "data")
    assert dataset.state_names == ["j1.pos", "j2.pos"] + [f"ee_pose.{n}" for n in pose_names]
    episode = dataset.episode(0)
    assert episode.states[:, :3].tolist() == [[20, -20, 20], [30, -30, 30], [40, -40, 40]]
    assert episode.states[:, 3:].tolist() == [[0, 0, 0, 0, 0, 1]] * 3  # ee_pose y .. qw
    # beside the normalised action, the physical command in the Action's units (value x scale)
    assert dataset.command_names == NAMES
    np.testing.assert_allclose(dataset.commands(0), episode.actions * [0.01, 0.01, 0.01, 1.0], rtol=1e-6)
    spec, recording = dataset.info["action_spec"], dataset.info["recording"]
    assert (spec["units"], spec["scale"], spec["mode"], spec["period_s"]) == (
        ["m", "m", "m", "1"],
        [0.01, 0.01, 0.01, 1.0],
        "delta",
        0.0125,
    )
    assert recording["dropped"] == {"/arm/ee_pose missing": 1, "/arm/joint_states stale": 1}
    assert recording["max_age_s"] == {"/arm/joint_states": 0.0, "/arm/ee_pose": 0.0005}
    assert recording["not_recorded"] == {
        "/arm/ee_pose nonfinite": 1,
        "/arm/joint_states names": 1,
        "/arm/joint_states order": 1,
        "spec": 1,
        "unanswered": 1,
    }
    text = str(dataset.summary())
    assert "state     9: j1.pos, j2.pos, ee_pose.x" in text and "physical commands in 'command'" in text, text


def test_nothing_recorded_leaves_no_folder_and_bad_settings_are_refused(tmp_path):
    rec = recorder(tmp_path / "empty")
    rec.observation(10, frame(1))
    assert rec.close() is None and not (tmp_path / "empty").exists() and not list(tmp_path.iterdir())
    with pytest.raises(RecordingError, match="kind 'teleop' is not one of"):
        recorder(tmp_path / "x", kind="teleop")
    with pytest.raises(RecordingError, match="a task name is needed"):
        recorder(tmp_path / "x", task=" ")


def test_sim_camera_ingest_and_controller_record_what_the_controller_sent(ros, tmp_path):
    msg = pytest.importorskip("roboscape_r_ros.msg")
    from std_srvs.srv import Trigger

    from helpers.ros_harness import RELIABLE_500, Output

    out = tmp_path / "recorded"
    sent = {}  # stamp -> values of the last Action the controller published for it (the one the sim executed)
    seen = ros.node.create_subscription(
        msg.Action,
        "/rec/action",
        lambda a: sent.update({(a.header.stamp.sec, a.header.stamp.nanosec): list(a.values)}),
        RELIABLE_500,
    )
    ns = ("-r", "__ns:=/rec")
    sim = Output(
        ros.start(
            "roboscape_r_ros.nodes.sim_bridge",
            *ns,
            "-p",
            "camera_resolution:=64",
            "-p",
            "auto_reset:=false",
            "-p",
            "max_steps:=20",
        )
    )
    ingest = ros.start(
        "roboscape_r_ros.nodes.camera_ingest",
        *ns,
        "--params-file",
        "config/camera_ingest.yaml",
        "-p",
        f"record.output:={out}",
        "-p",
        "record.task:=reach-v3",
        "-p",
        "record.camera:=corner2",
        "-p",
        "use_sim_time:=true",
    )
    controller = ros.start(
        "roboscape_r_ros.nodes.policy_controller",
        *ns,
        "--params-file",
        "config/policy_controller.yaml",
        "-p",
        "backend:=expert",
        "-p",
        "task:=reach-v3",
        "-p",
        "use_sim_time:=true",
    )
    reset = ros.node.create_client(Trigger, "/rec/reset")
    first = sim.wait(ros, r"episode (\S+) ended after (\d+) steps", 90)
    # under load the harness may match the controller only after the first episode: the second one,
    # started by the reset below, is then seen whole
    assert ros.spin_until(lambda: seen.get_publisher_count() > 0, 20)
    assert ros.spin_until(reset.service_is_ready, 20)
    future = reset.call_async(Trigger.Request())
    assert ros.spin_until(future.done, 20) and future.result().success
    pattern = r"episode (?!" + re.escape(first.group(1)) + r"\b)(\S+) ended after (\d+) steps"
    second = sim.wait(ros, pattern, 90)
    time.sleep(0.5)  # the answers to the final frame (the sim drops them) reach camera_ingest
    controller_log = ros.stop(controller)
    ingest_log = ros.stop(ingest)
    assert "recording finished: dataset" in ingest_log and "Traceback" not in ingest_log + controller_log, ingest_log
    dataset = EpisodeDataset.open(out)
    assert dataset.num_episodes == 2 and dataset.camera == "corner2" and dataset.image_shape == (64, 64, 3)
    for index, ended in enumerate((first, second)):
        episode = dataset.episode(index)
        # every frame the sim stepped from, plus its final frame (answered, then dropped by the sim)
        assert len(episode.frames) == len(episode.actions) == int(ended.group(2)) + 1, (index, ingest_log)
        assert episode.frames.std() > 0 and episode.task == "reach-v3" and episode.kind == "expert"
    # the sim's state streams, under sim_bridge's names, held at each frame (same stamps: age 0)
    from roboscape_r_ros.runtime.sessions.sim_session import METAWORLD_OBS_NAMES

    pose = ["ee_pose.x", "ee_pose.y", "ee_pose.z", "ee_pose.qx", "ee_pose.qy", "ee_pose.qz", "ee_pose.qw"]
    assert dataset.state_names == [f"{n}.pos" for n in METAWORLD_OBS_NAMES] + pose
    assert dataset.info["recording"]["max_age_s"] == {"/rec/state": 0.0, "/rec/ee_pose": 0.0}
    states = np.concatenate([dataset.episode(i).states for i in range(2)])
    np.testing.assert_array_equal(states[:, -7:-4], states[:, :3])  # ee_pose is the observation's hand
    assert np.abs(np.diff(states[:, :3], axis=0)).max() > 1e-3  # the hand moved
    # the physical command beside the normalised action, and what it means
    spec = dataset.info["action_spec"]
    assert (spec["names"], spec["units"], spec["scale"], spec["mode"], spec["topic"]) == (
        ["dx", "dy", "dz", "gripper"],
        ["m", "m", "m", "1"],
        [0.01, 0.01, 0.01, 1.0],
        "delta",
        "/rec/action",
    )
    commands = np.concatenate([dataset.commands(i) for i in range(2)])
    recorded = np.concatenate([dataset.episode(i).actions for i in range(2)])
    np.testing.assert_allclose(commands, recorded * np.float32([0.01, 0.01, 0.01, 1.0]), rtol=1e-6)
    published = np.array([values for _, values in sorted(sent.items())], np.float32)
    print(
        f"episodes of {first.group(2)} and {second.group(2)} steps; {len(recorded)} actions recorded, "
        f"{len(published)} seen published"
    )
    # everything the harness saw was recorded, in order; it saw at least the whole second episode
    assert len(published) >= len(dataset.episode(1).actions) - 1  # its final frame's answer may come after stop
    np.testing.assert_array_equal(recorded[len(recorded) - len(published) :], published[-len(recorded) :])


def test_bad_actions_are_not_recorded_and_warned_once_each(ros, tmp_path):
    """camera_ingest recording alone: the harness is camera, arm (a JointState on state; no ee_pose:
    record.poses:=[]) and controller (32x32 in, 16x16 recorded). A frame whose joint state is stale is
    not recorded, and counted."""
    msg = pytest.importorskip("roboscape_r_ros.msg")
    from builtin_interfaces.msg import Time
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Header

    from helpers.policy_rig import camera_image
    from helpers.ros_harness import RELIABLE_50

    out = tmp_path / "recorded"
    proc = ros.start(
        "roboscape_r_ros.nodes.camera_ingest",
        "-p",
        f"record.output:={out}",
        "-p",
        "record.task:=reach-v3",
        "-p",
        "output_size:=16",
        "-p",
        "warning_period_s:=60.0",
        "-p",
        "record.poses:=[]",
    )
    frames, raw = [], ros.node.create_publisher(Image, "image_raw", qos_profile_sensor_data)
    ros.node.create_subscription(Image, "observation", frames.append, qos_profile_sensor_data)
    actions = ros.node.create_publisher(msg.Action, "action", RELIABLE_50)
    joints = ros.node.create_publisher(JointState, "state", RELIABLE_50)
    obs = camera_image(ros.node.get_clock().now().to_msg(), size=32)
    state = JointState(header=Header(stamp=obs.header.stamp), name=["j1", "j2"], position=[0.25, -0.5])
    # published again with each frame: best effort (a repeated stamp is recorded once)
    assert ros.spin_until(lambda: frames, 20, tick=lambda: (joints.publish(state), raw.publish(obs)))
    ros.spin_until(lambda: actions.get_subscription_count() > 0, 10)

    def action(values, stamp=obs.header.stamp):
        return msg.Action(header=Header(stamp=stamp), names=NAMES, values=values)

    later = Time(sec=obs.header.stamp.sec + 5)
    for _ in range(3):
        actions.publish(action([float("nan"), 0.0, 0.0, 0.0]))
        actions.publish(action([0.1, 0.0, 0.0, 0.0], stamp=later))  # answers no frame seen
    actions.publish(action([0.5, -0.5, 0.25, 1.0]))
    stale = camera_image(Time(sec=obs.header.stamp.sec + 2, nanosec=obs.header.stamp.nanosec), size=32)
    assert ros.spin_until(
        lambda: len(frames) > 1 and frames[-1].header.stamp == stale.header.stamp, 20, tick=lambda: raw.publish(stale)
    )
    actions.publish(action([0.1, 0.1, 0.1, 0.1], stamp=stale.header.stamp))  # its joint state is 2 s old
    ros.spin_until(lambda: False, 1.0)
    log = ros.stop(proc)
    assert log.count("not recorded: an action with NaN or inf values [1 in all]") == 1, log
    assert log.count("not recorded: an action whose stamp answers no observation seen") == 1, log
    assert "recording finished: dataset" in log and "3 nonfinite, 3 unmatched, 1 /state stale" in log, log
    assert "Traceback" not in log, log
    dataset = EpisodeDataset.open(out)
    episode = dataset.episode(0)
    assert episode.actions.tolist() == [[0.5, -0.5, 0.25, 1.0]] and episode.frames.shape == (1, 16, 16, 3)
    assert dataset.state_names == ["j1.pos", "j2.pos"] and episode.states.tolist() == [[0.25, -0.5]]
    assert dataset.info["recording"]["dropped"] == {"/state stale": 1}
