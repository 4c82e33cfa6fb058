"""`roboscape-r import-bag` on small bags written with rosbags: frames, actions, states, alignment,
episodes and labels checked exactly, and the bad-bag battery (one line, exit 2, no dataset)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.bag_writer import BagWriter
from helpers.cli_runner import assert_one_line_error, cli
from roboscape_r_ros.commands.import_bag import ImportBagConfig, run_import_bag
from roboscape_r_ros.config import load_config
from roboscape_r_ros.contract.action_spec import ActionSpec
from roboscape_r_ros.contract.adapters import Pose, pose_target, quat_from_rpy
from roboscape_r_ros.data.done_labels import done_labels
from roboscape_r_ros.data.reader import EpisodeDataset

CAMERA, SIZE = "/camera/image_raw", 16


def ns(seconds: float) -> int:
    return round(seconds * 1e9)


def colour(i: int) -> tuple[int, int, int]:
    return (8 * i, 100, 255 - 8 * i)


def camera_frame(i: int) -> np.ndarray:
    """24x32 rgb8, one colour per frame index: after the centre crop and resize still that colour."""
    return np.broadcast_to(np.array(colour(i), np.uint8), (24, 32, 3)).copy()


def import_bag(tmp_path, *overrides: str) -> tuple:
    cfg = load_config(
        ImportBagConfig, "import_bag", None, [f"output={tmp_path / 'ds'}", f"camera.size={SIZE}", *overrides]
    )
    summary = run_import_bag(cfg)
    return summary, EpisodeDataset.open(tmp_path / "ds")


def frame_indices(frames: np.ndarray) -> list[int]:
    return [int(round(f[0, 0, 0] / 8)) for f in frames]


@pytest.mark.slow
def test_mcap_action_messages_joint_and_pose_states_episode_topic_and_success_topic(tmp_path):
    """Camera at 10 Hz (frames 0..19 at 1.0 + 0.1 i s), Action answering frames 1..19 but 5,
    joint states at 50 Hz offset by 5 ms with a gap, pose with every frame; episode ids and success
    on their topics. Dropped: frame 0 (no action, no joint state yet), 5 (action 0.1 s old), 7 (joint
    state 0.115 s old)."""
    bag = tmp_path / "bag"
    with BagWriter(bag, "mcap") as w:
        w.string("/episode", ns(0.9), "a")
        w.string("/episode", ns(1.55), "b")
        w.boolean("/success", ns(1.05), False)
        w.boolean("/success", ns(1.25), True)
        for k in range(100):
            t = 1.005 + 0.02 * k
            if not 1.6 < t < 1.78:
                w.joint_state("/joint_states", ns(t), ["j1", "j2"], [k, -k])
        for i in range(20):
            stamp = ns(1.0 + 0.1 * i)
            w.image(CAMERA, stamp, camera_frame(i))
            w.pose("/ee_pose", stamp, [i, 0, 0], [0, 0, 0, 1])
            if i not in (0, 5):
                w.action("/action", stamp, ["dx", "dy"], [i / 100, -i / 100], scale=[0.01, 0.01])

    summary, ds = import_bag(
        tmp_path,
        f"bags=[{bag}]",
        "states=[/joint_states,/ee_pose]",
        "max_age_s=0.05",
        "episodes.split=topic",
        "labels.source=topic",
        "task=stack",
    )
    kept = {0: [1, 2, 3, 4], 1: [6, *range(8, 20)]}
    assert [m.length for m in ds.episodes] == [4, 13] and ds.fps == 10
    assert (summary.camera_frames, summary.kept_frames) == (20, 17)
    assert summary.dropped == {
        "/action missing": 1,
        "/action stale": 1,
        "/joint_states missing": 1,
        "/joint_states stale": 1,
    }
    assert summary.max_age_s == {"/action": 0.0, "/joint_states": pytest.approx(0.015), "/ee_pose": 0.0}
    assert ds.action_names == ["dx", "dy"]
    assert ds.state_names == ["j1.pos", "j2.pos", *(f"ee_pose.{n}" for n in ("x", "y", "z", "qx", "qy", "qz", "qw"))]
    spec = ds.info["action_spec"]
    assert (spec["units"], spec["scale"], spec["mode"], spec["lower"]) == (["m", "m"], [0.01, 0.01], "delta", [-1, -1])
    assert ds.info["import"]["dropped"] == summary.dropped
    for index, frames in kept.items():
        episode = ds.episode(index)
        assert frame_indices(episode.frames) == frames
        np.testing.assert_array_equal(episode.frames[:, 5, 5], np.array([colour(i) for i in frames], np.uint8))
        np.testing.assert_allclose(episode.actions, np.array([[i / 100, -i / 100] for i in frames]), rtol=1e-6)
        # the joint state held at frame i (1.0 + 0.1 i s) is message k = 5 i - 1 (stamped 1.085 + 0.1 (i - 1) s)
        np.testing.assert_array_equal(episode.states[:, :2], [[5 * i - 1, 1 - 5 * i] for i in frames])
        np.testing.assert_array_equal(episode.states[:, 2], frames)
        assert episode.task == "stack" and episode.labelled
    a, b = ds.episode(0), ds.episode(1)
    assert a.success and not b.success
    np.testing.assert_array_equal(a.done, done_labels(4, [2])[0])  # success shows from 1.3 s: kept frame 2
    assert not b.done.any()

    inspect = cli("inspect", f"dataset={tmp_path / 'ds'}")
    assert inspect.returncode == 0, inspect.stderr
    assert "episodes  2, 17 frames" in inspect.stdout and "expert 2 (50% success)" in inspect.stdout
    assert "kept      17 of 20 camera frames; dropped 3" in str(summary)


def test_sqlite3_compressed_jpeg_twist_split_by_gap_and_flags(tmp_path):
    bag = tmp_path / "bag"
    stamps = [1.0 + 0.1 * i for i in range(6)] + [4.0 + 0.1 * i for i in range(5)]  # a 2.5 s gap
    with BagWriter(bag, "sqlite3") as w:
        for i, t in enumerate(stamps):
            w.compressed(CAMERA, ns(t), camera_frame(i), "jpeg")
            w.twist("/cmd_twist", ns(t), [i, 0, -i], [0, 0, 0.5 * i])
    summary, ds = import_bag(
        tmp_path,
        f"bags=[{bag}]",
        "action.source=twist",
        "action.topic=/cmd_twist",
        "action.scale=[0.5,0.5,0.5,1,1,1]",
        "episodes.split=gap",
        "labels.source=flags",
        "labels.success=[false,true]",
    )
    assert [m.length for m in ds.episodes] == [6, 5] and [m.success for m in ds.episodes] == [False, True]
    assert ds.action_names == ["vx", "vy", "vz", "wx", "wy", "wz"] and ds.state_names == ["time_s"]
    assert ds.info["action_spec"]["mode"] == "velocity" and ds.info["action_spec"]["units"][3] == "rad/s"
    second = ds.episode(1)
    np.testing.assert_allclose(second.actions[:, :3], [[2 * i, 0, -2 * i] for i in range(6, 11)])
    np.testing.assert_allclose(second.actions[:, 5], [0.5 * i for i in range(6, 11)])
    np.testing.assert_allclose(second.states[:, 0], np.arange(5) * 0.1, atol=1e-6)
    np.testing.assert_array_equal(second.done, done_labels(5, [4])[0])
    assert np.abs(second.frames[:, 8, 8].astype(int) - [colour(i) for i in range(6, 11)]).max() <= 3  # jpeg
    assert summary.dropped == {} and ds.fps == 10


def poses(i: int) -> tuple[list[float], np.ndarray]:
    return [0.01 * i * i, 0.0, -0.02 * i], quat_from_rpy(0.1 * i, 0.0, 0.05 * i)


@pytest.mark.parametrize("source", ["trajectory", "array", "joint_deltas", "pose_deltas", "action_png"])
def test_every_action_source(tmp_path, source):
    """Five frames at 10 Hz, labels unknown; the other action sources, and CompressedImage png."""
    bag = tmp_path / "bag"
    with BagWriter(bag, "mcap") as w:
        for i in range(5):
            t = ns(1.0 + 0.1 * i)
            if source == "action_png":
                w.compressed(CAMERA, t, camera_frame(i), "png")
            else:
                w.image(CAMERA, t, camera_frame(i)[..., ::-1].copy(), encoding="bgr8")
            w.trajectory("/cmd_trajectory", t, ["j1", "j2"], [i, 2 * i])
            w.array("/cmd_array", t, [i, 1.0])
            w.joint_state("/joint_states", t, ["j1", "j2"], [i * i, -i])
            w.pose("/ee_pose", t, *poses(i))
            w.action("/action", t, ["dx"], [0.1 * i])
    topics = {
        "trajectory": ["action.topic=/cmd_trajectory"],
        "array": ["action.topic=/cmd_array", "action.names=[x,gripper]", "action.units=[m,1]"],
        "joint_deltas": ["action.topic=/joint_states"],
        "pose_deltas": ["action.topic=/ee_pose"],
        "action_png": ["action.source=action"],
    }[source]
    source_option = [] if source == "action_png" else [f"action.source={source}"]
    summary, ds = import_bag(tmp_path, f"bags=[{bag}]", *source_option, *topics)
    episode = ds.episode(0)
    assert frame_indices(episode.frames) == [0, 1, 2, 3, 4]  # bgr8 and png decode to the same colours
    np.testing.assert_array_equal(episode.frames[:, 3, 3], [colour(i) for i in range(5)])
    expected = {
        "trajectory": ([[i, 2 * i] for i in range(5)], ["j1", "j2"], "absolute"),
        "array": ([[i, 1] for i in range(5)], ["x", "gripper"], "absolute"),
        "joint_deltas": ([[2 * i + 1, -1] for i in range(4)] + [[0, 0]], ["j1", "j2"], "delta"),
        "pose_deltas": (None, ["dx", "dy", "dz", "droll", "dpitch", "dyaw"], "delta"),
        "action_png": ([[0.1 * i] for i in range(5)], ["dx"], "delta"),
    }[source]
    if source == "pose_deltas":  # the cmd_pose adapter applied to each pose reaches the next one
        spec = ActionSpec(tuple(expected[1]), ("m",) * 3 + ("rad",) * 3, (1.0,) * 6, (-1.0,) * 6, (1.0,) * 6)
        for i, action in enumerate(episode.actions[:4]):
            target = pose_target(spec, action.astype(np.float64), Pose(*map(np.asarray, poses(i))))
            xyz, quaternion = poses(i + 1)
            np.testing.assert_allclose(target.position, xyz, atol=1e-6)
            assert abs(np.dot(target.orientation, quaternion)) == pytest.approx(1.0, abs=1e-6)
        assert not episode.actions[4].any()
    else:
        np.testing.assert_allclose(episode.actions, expected[0], atol=1e-6)
    assert (ds.action_names, ds.info["action_spec"]["mode"]) == (expected[1], expected[2])
    assert not episode.labelled and not episode.success and not episode.done.any()
    assert "labels    unknown: the episodes train the dynamics, not the done head" in str(summary)
    assert "labels    unknown for 1 episodes" in str(ds.summary())


# --- bad bags --------------------------------------------------------------------------------------


def small_bag(path, storage: str = "mcap", *, encoding: str = "rgb8", stamps=(1.0, 1.1, 1.2), compressed="") -> None:
    with BagWriter(path, storage) as w:
        for i, t in enumerate(stamps):
            if compressed:
                w.compressed(CAMERA, ns(t), camera_frame(i), compressed)
            else:
                w.image(
                    CAMERA,
                    ns(t),
                    camera_frame(i)[..., :1].copy() if encoding == "mono8" else camera_frame(i),
                    encoding=encoding,
                    log_ns=ns(1.0 + 0.1 * i),
                )
            w.action("/action", ns(t), ["dx"], [0.0])


def truncate(path) -> None:
    data_file = next(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])


BAD = {
    "truncated mcap": (lambda p: (small_bag(p), truncate(p)), [], "not a readable rosbag2 (File end magic is invalid"),
    "truncated sqlite3": (lambda p: (small_bag(p, "sqlite3"), truncate(p)), [], "database disk image is malformed"),
    "no such bag": (lambda p: None, [], "not a readable rosbag2"),
    "missing topic": (
        small_bag,
        ["action.topic=/cmd"],
        "no topic /cmd in the bag (topics: /action, /camera/image_raw)",
    ),
    "wrong type": (
        small_bag,
        ["action.source=twist"],
        "topic /action is roboscape_r_ros/Action, expected geometry_msgs/TwistStamped",
    ),
    "unknown encoding": (
        lambda p: small_bag(p, encoding="yuv422"),
        [],
        "/camera/image_raw message 0: encoding 'yuv422' is not supported",
    ),
    "unknown compression": (lambda p: small_bag(p, compressed="tiff"), [], "compressed format 'tiff' is not supported"),
    "stamps going back": (
        lambda p: small_bag(p, stamps=(1.0, 1.2, 1.1)),
        [],
        "/camera/image_raw stamps are not increasing (message 2",
    ),
    "flags for other episodes": (
        small_bag,
        ["labels.source=flags", "labels.success=[true,false]"],
        "labels.success has 2 flags for 1 episodes",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_bags_give_one_line_and_no_dataset(tmp_path, case):
    make, overrides, message = BAD[case]
    bag = tmp_path / "bag"
    make(bag)
    result = cli("import-bag", f"bags=[{bag}]", f"output={tmp_path / 'out' / 'ds'}", *overrides)
    assert_one_line_error(result, "roboscape-r import-bag: error:", message)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
