"""LeRobot v3 datasets this package did not write (test/helpers/lerobot_layout.py writes them as LeRobot does):
camera choice, PNG and AV1 mp4 frames, other action and state names and sizes, and train-wm on one."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from helpers.cli_runner import assert_one_line_error, cli
from helpers.lerobot_layout import FRONT, NAMES, WRIST, make_episodes, write_lerobot_dataset
from roboscape_r_ros.data.done_labels import done_labels
from roboscape_r_ros.data.lerobot import DatasetCorruptError, DatasetSchemaError
from roboscape_r_ros.data.reader import EpisodeDataset


@pytest.fixture(scope="module")
def episodes():
    return make_episodes()


@pytest.fixture(scope="module")
def foreign(tmp_path_factory, episodes):
    return write_lerobot_dataset(tmp_path_factory.mktemp("lerobot") / "so100", episodes)


def test_several_cameras_need_a_choice_and_the_error_lists_them(foreign):
    with pytest.raises(DatasetSchemaError, match=f"2 cameras \\({FRONT}, {WRIST}\\): choose one with camera="):
        EpisodeDataset.open(foreign)
    with pytest.raises(DatasetSchemaError, match=f"no camera 'top'; available: {FRONT}, {WRIST}"):
        EpisodeDataset.open(foreign, camera="top")


def test_png_camera_reads_frames_actions_and_states_exactly(foreign, episodes):
    dataset = EpisodeDataset.open(foreign, camera=FRONT)
    assert (dataset.camera, dataset.image_shape, dataset.video) == ("front", (32, 32, 3), False)
    assert dataset.action_names == NAMES and dataset.state_names == NAMES
    arrays = dataset.load_arrays()
    np.testing.assert_array_equal(arrays.frames, np.concatenate([e["front"] for e in episodes]))
    np.testing.assert_array_equal(arrays.actions, np.concatenate([e["action"] for e in episodes]))
    np.testing.assert_array_equal(arrays.states, np.concatenate([e["state"] for e in episodes]))
    # no labels in a LeRobot dataset: the episodes train the dynamics, not the done head
    assert not arrays.labelled.any() and not arrays.done.any() and not arrays.subtask_index.any()
    assert [m.instruction for m in dataset.episodes] == [e["task"] for e in episodes]
    assert [m.kind for m in dataset.episodes] == ["expert"] * 3
    assert "unknown for 3 episodes" in str(dataset.summary())


def test_mp4_camera_decodes_each_episode_from_its_own_offset(foreign, episodes):
    dataset = EpisodeDataset.open(foreign, camera="wrist")  # the bare camera name works too
    assert (dataset.image_key, dataset.video) == (WRIST, True)
    for index, written in enumerate(episodes):
        frames = dataset.episode(index).frames.astype(np.float32)
        error = np.abs(frames - written["wrist"]).mean()
        other = np.abs(frames[:9] - episodes[(index + 1) % 3]["wrist"][:9]).mean()
        assert error < 6 and error < other / 2, (index, error, other)  # lossy, but its own frames


def test_av1_without_pyav_is_one_clear_error(foreign, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(DatasetCorruptError, match="AV1 video: OpenCV cannot decode it and PyAV is not installed"):
        EpisodeDataset.open(foreign, camera="wrist").load_arrays()


@pytest.mark.parametrize("names", ["motors", "none"])
def test_other_name_styles_and_no_state(tmp_path, episodes, names):
    root = write_lerobot_dataset(tmp_path / "ds", episodes, with_state=False, names=names, wrist=False)
    dataset = EpisodeDataset.open(root)  # one camera: no choice needed
    expected = NAMES if names == "motors" else [f"action_{i}" for i in range(6)]
    assert dataset.action_names == expected and dataset.state_names == []
    arrays = dataset.load_arrays()
    assert arrays.states.shape == (36, 0)
    np.testing.assert_array_equal(arrays.actions, np.concatenate([e["action"] for e in episodes]))


def test_channels_first_image_shape_is_understood(tmp_path, episodes):
    root = write_lerobot_dataset(tmp_path / "ds", episodes, wrist=False)
    info = json.loads((root / "meta/info.json").read_text())
    info["features"][FRONT] |= {"shape": [3, 32, 32], "names": ["channels", "height", "width"]}
    (root / "meta/info.json").write_text(json.dumps(info))
    dataset = EpisodeDataset.open(root)
    assert dataset.image_shape == (32, 32, 3)
    np.testing.assert_array_equal(dataset.episode(1).frames, episodes[1]["front"])


@pytest.mark.slow
def test_train_wm_on_a_lerobot_dataset(foreign, tmp_path):
    run = tmp_path / "run"
    args = ["train-wm", "--preset", "tiny", f"dataset={foreign}", f"run={run}", "threads=1", "progress=false"]
    args += ["model.action_dim=6", "model.train.tokenizer_steps=4", "model.train.action_steps=4"]
    args += ["model.train.goal_steps=2", "media_examples=1", "held_out_fraction=0.34"]
    assert_one_line_error(cli(*args), "2 cameras", FRONT, WRIST, "camera=")
    assert not run.exists() or not (run / "world_model.safetensors").exists()
    result = cli(*args, f"camera={WRIST}")
    assert result.returncode == 0, result.stderr[-2000:]
    split = json.loads((run / "split.json").read_text())
    assert split["camera"] == WRIST and len(split["train"]) + len(split["held_out"]) == 3
    assert (run / "world_model.safetensors").is_file()
    assert "no success/done labels" in (run / "train.log").read_text()


def test_next_success_is_read_as_the_success_label(tmp_path, episodes):
    """LeRobot's per-frame next.success labels an episode (success where any frame says so) and gives its done
    labels, rising to the first successful frame; without it a foreign episode stays unlabelled."""
    flags = [np.arange(len(e["action"])) >= len(e["action"]) - 3 for e in episodes]
    flags[1][:] = False
    dataset = EpisodeDataset.open(write_lerobot_dataset(tmp_path / "ds", episodes, success=flags), camera="front")
    assert [m.success for m in dataset.episodes] == [True, False, True]
    assert all(m.labelled for m in dataset.episodes)
    arrays = dataset.load_arrays()
    assert arrays.labelled.all()
    first = dataset.episode(0)
    expected, _ = done_labels(len(flags[0]), [len(flags[0]) - 3])
    np.testing.assert_allclose(first.done, expected)
    assert not dataset.episode(1).done.any()
    np.testing.assert_allclose(arrays.done[: len(flags[0])], expected)
    unlabelled = EpisodeDataset.open(write_lerobot_dataset(tmp_path / "plain", episodes), camera="front")
    assert not any(m.labelled or m.success for m in unlabelled.episodes)
