"""Episode dataset: LeRobot v3.0 layout on disk, atomic writes, validated reads, training windows."""

import gc
import itertools
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roboscape_r_ros.data.lerobot import (
    DatasetCorruptError,
    DatasetExistsError,
    DatasetNotFoundError,
    DatasetVersionError,
    DatasetWriteError,
    DatasetWriter,
    Episode,
    EpisodeError,
)
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.data.windows import WindowError, WindowLoader, split_episodes

SHAPE = (16, 16, 3)
ACTIONS = ["dx", "dy", "dz", "gripper"]
STATES = ["x", "y", "z", "gripper", "obj_x", "obj_y"]
KINDS = ["expert", "noisy", "failed", "random"]


def make_episode(index: int, length: int, rng: np.random.Generator, shape=SHAPE) -> Episode:
    """Random frames (so bit-exactness means something); actions[:, 0] marks the episode and
    actions[:, 1] the frame, so a window shows where it came from."""
    actions = rng.standard_normal((length, len(ACTIONS))).astype(np.float32)
    actions[:, 0], actions[:, 1] = index, np.arange(length)
    return Episode(
        frames=rng.integers(0, 256, (length, *shape), dtype=np.uint8),
        actions=actions,
        states=rng.standard_normal((length, len(STATES))).astype(np.float32),
        done=np.exp(4 * (np.linspace(0, 1, length) - 1)).astype(np.float32),
        subtask_index=(np.arange(length) >= length // 2).astype(np.int64),
        task=f"task-{index % 2}",
        instruction=f"Do task {index % 2}.",
        success=index % 3 == 0,
        kind=KINDS[index % 4],
    )


def open_writer(root, **options) -> DatasetWriter:
    defaults = dict(fps=10, camera="corner2", image_shape=SHAPE, action_names=ACTIONS, state_names=STATES)
    return DatasetWriter(root, **{**defaults, **options})


def write(root, episodes, **options) -> None:
    with open_writer(root, image_shape=episodes[0].frames.shape[1:], **options) as writer:
        for episode in episodes:
            writer.add_episode(episode)


@pytest.fixture
def episodes():
    rng = np.random.default_rng(0)
    return [make_episode(i, length, rng) for i, length in enumerate([7, 12, 3, 9, 15])]


@pytest.fixture
def dataset_root(tmp_path, episodes):
    root = tmp_path / "ds"
    write(root, episodes)
    return root


def files_under(root) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --- the written schema follows the LeRobot v3.0 layout ------------------------------------------


def test_written_schema_follows_lerobot_v3(dataset_root, episodes):
    assert files_under(dataset_root) == {
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "data/chunk-000/file-000.parquet",
    }
    info = json.loads((dataset_root / "meta/info.json").read_text())
    assert set(info) == {
        "codebase_version",
        "robot_type",
        "total_episodes",
        "total_frames",
        "total_tasks",
        "chunks_size",
        "data_files_size_in_mb",
        "video_files_size_in_mb",
        "fps",
        "splits",
        "data_path",
        "video_path",
        "features",
    }
    assert info["codebase_version"] == "v3.0"
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] is None
    assert (info["robot_type"], info["fps"], info["chunks_size"]) == ("sawyer", 10, 1000)
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (5, 46, 2)
    assert info["splits"] == {"train": "0:5"}

    features = info["features"]
    assert features["observation.images.corner2"] == {
        "dtype": "image",
        "shape": [16, 16, 3],
        "names": ["height", "width", "channels"],
    }
    assert features["action"] == {"dtype": "float32", "shape": [4], "names": ACTIONS}
    assert features["observation.state"] == {"dtype": "float32", "shape": [6], "names": STATES}
    assert features["done_label"] == {"dtype": "float32", "shape": [1], "names": None}
    for key in ("frame_index", "episode_index", "index", "task_index", "subtask_index"):
        assert features[key] == {"dtype": "int64", "shape": [1], "names": None}
    assert features["timestamp"] == {"dtype": "float32", "shape": [1], "names": None}

    # Parquet columns as HF datasets writes them: Image -> struct<bytes, path>, vectors -> fixed lists.
    data = pq.read_table(dataset_root / "data/chunk-000/file-000.parquet")
    schema = data.schema
    assert schema.names == list(features)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert schema.field("observation.images.corner2").type == image_type
    assert schema.field("action").type == pa.list_(pa.float32(), 4)
    assert schema.field("observation.state").type == pa.list_(pa.float32(), 6)
    assert schema.field("done_label").type == pa.float32() and schema.field("index").type == pa.int64()
    assert data["index"].to_pylist() == list(range(46))
    assert data["frame_index"].to_pylist()[:8] == [0, 1, 2, 3, 4, 5, 6, 0]
    assert data["timestamp"].to_pylist()[:2] == pytest.approx([0.0, 0.1])
    png = data["observation.images.corner2"][0]["bytes"].as_py()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")

    rows = pq.read_table(dataset_root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["episode_index"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["length"] for r in rows] == [7, 12, 3, 9, 15]
    assert [(r["dataset_from_index"], r["dataset_to_index"]) for r in rows][:2] == [(0, 7), (7, 19)]
    assert {(r["data/chunk_index"], r["data/file_index"]) for r in rows} == {(0, 0)}
    assert {(r["meta/episodes/chunk_index"], r["meta/episodes/file_index"]) for r in rows} == {(0, 0)}
    assert rows[1]["tasks"] == ["Do task 1."]
    assert [(r["task_name"], r["kind"], r["success"]) for r in rows[:2]] == [
        ("task-0", "expert", True),
        ("task-1", "noisy", False),
    ]
    assert rows[0]["instruction"] == "Do task 0."
    assert rows[0]["stats/action/mean"] == pytest.approx(episodes[0].actions.mean(axis=0).tolist(), rel=1e-6)

    tasks = pq.read_table(dataset_root / "meta/tasks.parquet")
    assert tasks.to_pylist() == [{"task_index": i, "task": f"Do task {i}."} for i in (0, 1)]
    # LeRobot reads it with pandas and looks tasks up by string: tasks.loc[task].task_index
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]

    stats = json.loads((dataset_root / "meta/stats.json").read_text())
    assert set(stats) == set(features)
    for ft in stats.values():  # LeRobot 0.4's QUANTILES normalisation reads q01..q99
        assert set(ft) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
        ordered = [np.asarray(ft[k]) for k in ("min", "q01", "q10", "q50", "q90", "q99", "max")]
        assert all((a <= b + 1e-9).all() for a, b in itertools.pairwise(ordered))
    lengths = np.array([len(e.actions) for e in episodes])
    medians = np.stack([np.quantile(e.actions, 0.5, axis=0) for e in episodes])
    assert stats["action"]["q50"] == pytest.approx((medians * lengths[:, None]).sum(0) / lengths.sum(), rel=1e-5)
    assert np.shape(stats["observation.images.corner2"]["q99"]) == (3, 1, 1)
    all_actions = np.concatenate([e.actions for e in episodes])
    assert stats["action"]["mean"] == pytest.approx(all_actions.mean(axis=0), rel=1e-5, abs=1e-6)
    assert stats["action"]["std"] == pytest.approx(all_actions.std(axis=0), rel=1e-5)
    assert stats["action"]["count"] == [46]
    assert np.shape(stats["observation.images.corner2"]["mean"]) == (3, 1, 1)  # per channel, in [0, 1]
    all_frames = np.concatenate([e.frames for e in episodes])
    assert np.ravel(stats["observation.images.corner2"]["std"]) == pytest.approx(
        all_frames.reshape(-1, 3).std(axis=0) / 255, rel=1e-6
    )


def test_summary_is_readable(tmp_path, episodes):
    with open_writer(tmp_path / "ds") as writer:
        for episode in episodes:
            writer.add_episode(episode)
        summary = writer.finalize()
    text = str(summary)
    assert str(tmp_path / "ds") in text and "5, 46 frames" in text and "16x16" in text and "10 fps" in text
    assert "task-0 (3), task-1 (2)" in text and "expert 2 (50% success)" in text and "MiB" in text
    assert summary.size_bytes > 0 and str(EpisodeDataset.open(tmp_path / "ds").summary()) == text


def test_unlabelled_episodes_round_trip_and_are_summarised(tmp_path, episodes):
    unknown = bad(episodes[1], success=False, done=np.zeros(12, np.float32), labelled=False)
    with open_writer(tmp_path / "ds") as writer:
        writer.add_episode(episodes[0])
        writer.add_episode(unknown)
        writer.finalize(extra_info={"action_spec": {"units": ["m", "m", "m", "1"]}})
    dataset = EpisodeDataset.open(tmp_path / "ds")
    assert [m.labelled for m in dataset.episodes] == [True, False] and not dataset.episode(1).labelled
    np.testing.assert_array_equal(dataset.load_arrays().labelled, [True, False])
    assert dataset.info["action_spec"] == {"units": ["m", "m", "m", "1"]}
    text = str(dataset.summary())
    assert "expert 1 (100% success), noisy 1 (success unknown)" in text
    assert "labels    unknown for 1 episodes (they train the dynamics, not the done head)" in text


def test_datasets_without_the_labelled_column_count_as_labelled(dataset_root):
    path = next((dataset_root / "meta/episodes").rglob("*.parquet"))
    pq.write_table(pq.read_table(path).drop(["labelled"]), path)
    assert all(m.labelled for m in EpisodeDataset.open(dataset_root).episodes)


def test_extra_info_may_not_replace_lerobot_keys(tmp_path, episodes):
    writer = open_writer(tmp_path / "ds")
    writer.add_episode(episodes[0])
    with pytest.raises(DatasetWriteError, match=r"extra info.json keys \['fps'\]"):
        writer.finalize(extra_info={"fps": 3})
    assert not (tmp_path / "ds").exists()


# --- round trip ------------------------------------------------------------------------------------


def test_round_trip_is_bit_exact(dataset_root, episodes):
    dataset = EpisodeDataset.open(dataset_root)
    assert (dataset.num_episodes, dataset.num_frames, dataset.fps) == (5, 46, 10)
    assert dataset.tasks == ["Do task 0.", "Do task 1."]
    assert (dataset.camera, dataset.image_shape, dataset.action_names) == ("corner2", SHAPE, ACTIONS)
    for i, expected in enumerate(episodes):
        got = dataset.episode(i)
        for name in ("frames", "actions", "states", "done", "subtask_index"):
            assert getattr(got, name).dtype == getattr(expected, name).dtype
            np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
        assert (got.task, got.instruction, got.success, got.kind) == (
            expected.task,
            expected.instruction,
            expected.success,
            expected.kind,
        )
    arrays = dataset.load_arrays()
    np.testing.assert_array_equal(arrays.frames, np.concatenate([e.frames for e in episodes]))
    np.testing.assert_array_equal(arrays.starts, [0, 7, 19, 22, 31])
    np.testing.assert_array_equal(arrays.task_index, [0, 1, 0, 1, 0])
    assert dataset.load_arrays() is arrays  # decoded once
    with pytest.raises(IndexError, match="episode 5 out of range"):
        dataset.episode(5)


def test_files_roll_over_at_the_size_limit(tmp_path):
    rng = np.random.default_rng(1)
    episodes = [make_episode(i, 10, rng) for i in range(7)]
    root = tmp_path / "ds"
    # ~9 KB of PNG per episode: two episodes fit a 0.02 MB file; two files fill a chunk folder.
    write(root, episodes, data_files_size_in_mb=0.02, chunks_size=2)
    data_files = sorted(f for f in files_under(root) if f.startswith("data/"))
    assert data_files == [
        "data/chunk-000/file-000.parquet",
        "data/chunk-000/file-001.parquet",
        "data/chunk-001/file-000.parquet",
        "data/chunk-001/file-001.parquet",
    ]
    assert [pq.read_metadata(root / f).num_rows for f in data_files] == [20, 20, 20, 10]  # whole episodes
    dataset = EpisodeDataset.open(root)
    assert [e.data_file for e in dataset.episodes] == [(0, 0), (0, 0), (0, 1), (0, 1), (1, 0), (1, 0), (1, 1)]
    for i, expected in enumerate(episodes):
        np.testing.assert_array_equal(dataset.episode(i).frames, expected.frames)
    all_actions = np.concatenate([e.actions for e in episodes])
    np.testing.assert_array_equal(dataset.load_arrays().actions, all_actions)


def test_video_storage_is_lossy_but_close(tmp_path):
    yy, xx = np.mgrid[0:32, 0:32]
    rng = np.random.default_rng(2)
    episodes = []
    for i in range(3):
        episode = make_episode(i, 12, rng, shape=(32, 32, 3))
        episode.frames = np.stack(
            [np.stack([(xx * 8 + t * 4) % 256, yy * 8, np.full_like(xx, 60 * i)], -1) for t in range(12)]
        ).astype(np.uint8)  # smooth content, as a camera sees; noise would defeat any lossy codec
        episodes.append(episode)
    root = tmp_path / "ds"
    write(root, episodes, video=True)
    assert "videos/observation.images.corner2/chunk-000/file-000.mp4" in files_under(root)
    info = json.loads((root / "meta/info.json").read_text())
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert info["features"]["observation.images.corner2"]["dtype"] == "video"
    assert "observation.images.corner2" not in pq.read_schema(root / "data/chunk-000/file-000.parquet").names
    rows = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    from_timestamps = [r["videos/observation.images.corner2/from_timestamp"] for r in rows]
    assert from_timestamps == pytest.approx([0.0, 1.2, 2.4])  # three 12-frame episodes in one file at 10 fps
    dataset = EpisodeDataset.open(root)
    for i, expected in enumerate(episodes):
        got = dataset.episode(i)
        np.testing.assert_array_equal(got.actions, expected.actions)
        assert np.abs(got.frames.astype(int) - expected.frames).mean() < 8
    assert np.abs(dataset.load_arrays().frames[12:24].astype(int) - episodes[1].frames).mean() < 8


# --- atomic writes, clear errors -------------------------------------------------------------------


def test_exception_inside_the_block_leaves_nothing(tmp_path, episodes):
    with pytest.raises(RuntimeError, match="collector crashed"):
        with open_writer(tmp_path / "ds") as writer:
            writer.add_episode(episodes[0])
            raise RuntimeError("collector crashed")
    assert list(tmp_path.iterdir()) == []  # neither the target nor a partial sibling


def test_writer_dropped_without_finalize_leaves_nothing(tmp_path, episodes):
    writer = open_writer(tmp_path / "ds")
    writer.add_episode(episodes[0])
    assert not (tmp_path / "ds").exists()  # nothing visible before finalize()
    del writer
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_finalize_without_episodes_is_an_error(tmp_path):
    with pytest.raises(DatasetWriteError, match="no episodes"):
        with open_writer(tmp_path / "ds"):
            pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "damaged",
    ["data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet", "meta/tasks.parquet"],
)
def test_truncated_parquet_is_reported_with_its_name(dataset_root, damaged):
    path = dataset_root / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetCorruptError, match="truncated or corrupt parquet") as err:
        EpisodeDataset.open(dataset_root)
    assert str(err.value).startswith(f"{path}: ")


def test_missing_data_file_is_reported(dataset_root):
    (dataset_root / "data/chunk-000/file-000.parquet").unlink()
    with pytest.raises(DatasetCorruptError, match="file-000.parquet: file missing"):
        EpisodeDataset.open(dataset_root)


def test_missing_info_json_or_foreign_folder_is_not_a_dataset(dataset_root, tmp_path):
    (dataset_root / "meta/info.json").unlink()
    with pytest.raises(DatasetNotFoundError, match="meta/info.json missing"):
        EpisodeDataset.open(dataset_root)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.png").write_bytes(b"\x89PNG")
    with pytest.raises(DatasetNotFoundError, match="not a LeRobot dataset"):
        EpisodeDataset.open(foreign)
    with pytest.raises(DatasetNotFoundError, match="no such folder"):
        EpisodeDataset.open(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        ({"codebase_version": "v2.1"}, DatasetVersionError, "codebase_version 'v2.1'"),
        ({"total_frames": 47}, DatasetCorruptError, "46 frames, info.json says 47"),
        ({"total_episodes": 4}, DatasetCorruptError, "5 episodes, info.json says 4"),
        ({"fps": "ten"}, DatasetCorruptError, "'fps' missing or not a int"),
    ],
)
def test_info_json_disagreeing_with_the_files_is_reported(dataset_root, edit, error, message):
    path = dataset_root / "meta/info.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    with pytest.raises(error, match=message):
        EpisodeDataset.open(dataset_root)


def test_unparsable_info_json_is_corrupt(dataset_root):
    (dataset_root / "meta/info.json").write_text("{not json")
    with pytest.raises(DatasetCorruptError, match="info.json: unreadable JSON"):
        EpisodeDataset.open(dataset_root)


def test_existing_target_needs_overwrite(tmp_path, episodes):
    root = tmp_path / "ds"
    write(root, episodes[:1])
    with pytest.raises(DatasetExistsError, match="not empty"):
        write(root, episodes)
    write(root, episodes[:2], overwrite=True)
    assert EpisodeDataset.open(root).num_episodes == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # the old copy is gone

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.png").write_bytes(b"")
    with pytest.raises(DatasetExistsError, match="not a dataset"):
        write(photos, episodes, overwrite=True)  # overwrite never deletes a foreign folder
    assert (photos / "cat.png").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    write(empty, episodes[:1])
    assert EpisodeDataset.open(empty).num_episodes == 1


def test_unwritable_output_folder_is_reported_early(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(DatasetWriteError, match=f"{blocker}/ds: output folder is not writable"):
        open_writer(blocker / "ds")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_reported_early(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(DatasetWriteError, match="not writable"):
        open_writer(locked / "ds")


def bad(episode: Episode, **changes) -> Episode:
    return Episode(**{**episode.__dict__, **changes})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: bad(e, actions=e.actions.astype(np.float64)), "actions has dtype float64, expected float32"),
        (lambda e: bad(e, actions=e.actions[:, :3]), r"actions has shape \(7, 3\), expected \(7, 4\)"),
        (lambda e: bad(e, frames=e.frames[:, :8]), r"frames has shape \(7, 8, 16, 3\), expected \(7, 16, 16, 3\)"),
        (lambda e: bad(e, frames=e.frames.astype(np.float32)), "frames has dtype float32, expected uint8"),
        (
            lambda e: bad(e, states=np.where(np.arange(7)[:, None] == 4, np.nan, e.states).astype(np.float32)),
            "states holds NaN or inf .first at row 4",
        ),
        (lambda e: bad(e, done=e.done * 2), r"done labels must lie in \[0, 1\]"),
        (lambda e: bad(e, done=e.done[:5]), r"done has shape \(5,\), expected \(7,\)"),
        (lambda e: bad(e, kind="lucky"), "kind must be one of expert, noisy, failed, random"),
        (lambda e: bad(e, instruction=""), "instruction must be a non-empty string"),
        (lambda e: bad(e, frames=e.frames[:0]), "frames must be uint8 .T,H,W,3. with T >= 1"),
        (lambda e: bad(e, labelled=False), "an unlabelled episode must have success False and all done labels 0"),
    ],
)
def test_bad_episodes_are_rejected_with_the_problem_named(tmp_path, episodes, change, message):
    root = tmp_path / "ds"
    with open_writer(root) as writer:
        with pytest.raises(EpisodeError, match=f"episode 0: {message}"):
            writer.add_episode(change(episodes[0]))
        writer.add_episode(episodes[0])  # a rejected episode leaves the writer usable
    assert EpisodeDataset.open(root).num_episodes == 1


# --- training windows ------------------------------------------------------------------------------


def test_windows_never_cross_episode_boundaries(dataset_root, episodes):
    dataset = EpisodeDataset.open(dataset_root)
    loader = WindowLoader(dataset, window=4, batch_size=64, seed=0)
    assert loader.skipped_episodes == [2]  # 3 frames < T
    assert loader.num_windows == sum(len(e.actions) - 3 for e in episodes if len(e.actions) >= 4)
    seen = set()
    for _, batch in zip(range(5), loader, strict=False):
        assert batch["frames"].shape == (64, 4, *SHAPE) and batch["frames"].dtype == np.uint8
        assert batch["actions"].shape == (64, 4, 4) and batch["actions"].dtype == np.float32
        assert batch["done"].shape == (64, 4) and batch["done"].dtype == np.float32
        assert batch["task_index"].dtype == np.int64 and batch["episode_index"].dtype == np.int64
        marker, step = batch["actions"][..., 0], batch["actions"][..., 1]
        np.testing.assert_array_equal(marker, batch["episode_index"][:, None].repeat(4, axis=1))
        np.testing.assert_array_equal(np.diff(step, axis=1), 1)  # consecutive frames of one episode
        np.testing.assert_array_equal(batch["task_index"], batch["episode_index"] % 2)
        for b in range(64):
            source = episodes[batch["episode_index"][b]]
            first = int(step[b, 0])
            np.testing.assert_array_equal(batch["frames"][b], source.frames[first : first + 4])
            np.testing.assert_array_equal(batch["done"][b], source.done[first : first + 4])
            seen.add((int(batch["episode_index"][b]), first))
    assert len(seen) > loader.num_windows // 2


def test_windows_are_deterministic_for_a_seed(dataset_root):
    dataset = EpisodeDataset.open(dataset_root)

    def batches(seed: int) -> list[dict[str, np.ndarray]]:
        loader = WindowLoader(dataset, window=3, batch_size=8, seed=seed)
        return [loader.sample() for _ in range(3)]

    first, again, other = batches(7), batches(7), batches(8)
    for batch, same in zip(first, again, strict=True):
        for key in batch:
            np.testing.assert_array_equal(batch[key], same[key])
    assert not np.array_equal(first[0]["actions"], other[0]["actions"])
    assert not np.array_equal(first[0]["actions"], first[1]["actions"])  # a stream, not one batch repeated


def test_windows_from_an_episode_subset(dataset_root):
    dataset = EpisodeDataset.open(dataset_root)
    train, held_out = split_episodes(dataset.num_episodes, held_out_fraction=0.4, seed=3)
    loader = WindowLoader(dataset, window=3, batch_size=32, episodes=held_out, seed=0)
    assert set(loader.sample()["episode_index"]) <= set(held_out.tolist())
    with pytest.raises(WindowError, match="none of the 1 chosen episodes has 10 frames"):
        WindowLoader(dataset, window=10, batch_size=2, episodes=[0])
    with pytest.raises(WindowError, match="must lie in 0..4"):
        WindowLoader(dataset, window=2, batch_size=2, episodes=[5])


def test_split_episodes_is_a_seeded_partition():
    train, held_out = split_episodes(20, held_out_fraction=0.25, seed=1)
    assert len(held_out) == 5 and sorted([*train, *held_out]) == list(range(20))
    again, _ = split_episodes(20, held_out_fraction=0.25, seed=1)
    other, _ = split_episodes(20, held_out_fraction=0.25, seed=2)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)
    train, held_out = split_episodes([3, 8, 9], held_out_fraction=0.01, seed=0)
    assert len(held_out) == 1 and len(train) == 2  # both sides non-empty
    with pytest.raises(WindowError, match="held_out_fraction"):
        split_episodes(5, held_out_fraction=1.5, seed=0)
