"""`roboscape-r view`: the MCAP recording it writes for a dataset, a world-model run and an evaluation,
read back with rosbags (topics, message counts, image sizes, pixels), and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from helpers.cli_runner import assert_one_line_error, cli
from helpers.wm_synthetic import write_dataset
from roboscape_r_ros import cli as roboscape_cli
from roboscape_r_ros.commands.evaluate import run_evaluate
from roboscape_r_ros.config import load_config
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.rl.evaluate import EvaluateConfig
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig
from roboscape_r_ros.world_model import WorldModel
from roboscape_r_ros.world_model.rollout import world_frames

STORE = get_typestore(Stores.ROS2_KILTED)


def read_back(folder: Path) -> dict[str, list]:
    """Every message of the rosbag2 folder, deserialised, by topic (in log-time order)."""
    messages: dict[str, list] = {}
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.yaml", f"{folder.name}.mcap"]
    with Reader(folder) as reader:
        for connection, stamp, raw in reader.messages():
            msg = STORE.deserialize_cdr(raw, connection.msgtype)
            messages.setdefault(connection.topic, []).append((stamp, msg))
    return messages


def pixels(msg) -> np.ndarray:
    assert msg.encoding == "rgb8" and msg.step == msg.width * 3
    return np.asarray(msg.data).reshape(msg.height, msg.width, 3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "synthetic", per_kind=2)


def test_dataset_recording_holds_every_frame_action_and_label(dataset, tmp_path, capsys):
    out = tmp_path / "view"
    assert roboscape_cli.main(["view", f"path={dataset}", f"out={out}", "episodes=3"]) == 0
    summary = capsys.readouterr().out
    assert f"{out / 'view.mcap'}" in summary and "ros2 bag play" in summary
    ds = EpisodeDataset.open(dataset)
    lengths = [ds.episodes[e].length for e in range(3)]
    got = read_back(out)
    assert sorted(got) == [
        "/dataset/action",
        "/dataset/done_label",
        "/dataset/episode",
        "/dataset/image",
        "/dataset/state",
    ]
    assert {topic: len(m) for topic, m in got.items() if topic != "/dataset/episode"} == dict.fromkeys(
        ["/dataset/action", "/dataset/done_label", "/dataset/image", "/dataset/state"], sum(lengths)
    )
    assert len(got["/dataset/episode"]) == 3 and "reach-v3" in got["/dataset/episode"][0][1].data
    frames = np.concatenate([ds.episode(e).frames for e in range(3)])
    np.testing.assert_array_equal(np.stack([pixels(m) for _, m in got["/dataset/image"]]), frames)
    first_action = got["/dataset/action"][0][1]
    assert list(first_action.name) == ds.action_names
    np.testing.assert_allclose(first_action.position, ds.episode(0).actions[0], rtol=1e-6)
    # the second episode starts 1 s after the first one ends (80 fps)
    stamps = [t for t, _ in got["/dataset/image"]]
    assert stamps[lengths[0]] - stamps[lengths[0] - 1] == pytest.approx(1e9 + 1e9 / 80, abs=1)


@pytest.mark.slow
def test_world_model_recording_shows_real_dream_goal_and_held_actions(dataset, tmp_path):
    run = tmp_path / "run"
    train = ["train-wm", "--preset", "tiny", f"dataset={dataset}", f"run={run}", "threads=1", "progress=false"]
    train += ["model.train.tokenizer_steps=6", "model.train.action_steps=6", "model.train.goal_steps=4"]
    assert roboscape_cli.main(train) == 0
    out = tmp_path / "view"
    view = ["view", f"path={run}", f"out={out}", "examples=2", "sheet_steps=3", "sheet_contexts=2"]
    assert roboscape_cli.main(view) == 0
    got = read_back(out)
    held = ["plus_dx", "minus_dx", "plus_dy", "minus_dy", "plus_dz", "close_gripper"]
    for topic in [
        "/wm/real",
        "/wm/dream",
        "/wm/goal",
        "/wm/action",
        "/wm/dream_done",
        *(f"/wm/held/{h}" for h in held),
    ]:
        assert topic in got, sorted(got)
    split = json.loads((run / "split.json").read_text())
    ds = EpisodeDataset.open(dataset)
    shown = [int(m.data.split()[2].rstrip(":")) for _, m in got["/wm/episode"]]
    assert len(shown) == 2 and set(shown) <= set(split["held_out"])
    cfg = WorldModel.from_checkpoint(run / "world_model.safetensors").cfg
    k, c = cfg.frame_skip, cfg.context_length - 1
    n = [world_frames(ds.episodes[e].length, k) for e in shown]
    assert len(got["/wm/real"]) == len(got["/wm/dream"]) == sum(n)
    assert len(got["/wm/dream_done"]) == sum(n) - 2 * c  # the done head runs on dreamed frames only
    real = np.stack([pixels(m) for _, m in got["/wm/real"]])
    assert real.shape[1:] == (32, 32, 3)
    np.testing.assert_array_equal(real[: n[0]], ds.episode(shown[0]).frames[::k])
    dream = np.stack([pixels(m) for _, m in got["/wm/dream"]])
    np.testing.assert_array_equal(dream[:c], real[:c])  # the context is real, what follows is dreamed
    assert not np.array_equal(dream[c : n[0]], real[c : n[0]])
    assert all(len(got[f"/wm/held/{h}"]) == 2 * (3 + 1) for h in held)  # 2 contexts x (last real + 3 dreamed)
    assert len(got["/wm/held/context"]) == 2


@pytest.mark.slow
def test_evaluation_recording_has_each_actors_episodes_and_clips(tmp_path):
    policy = ImagePolicy(PolicyConfig(image_size=32, channels=[8, 8], hidden=16)).save(tmp_path / "p.safetensors")
    overrides = [f"policies=[tiny={policy}]", "ours=tiny", "env.tasks=[reach-v3]", "env.resolution=32"]
    overrides += ["env.max_steps=60", "seeds=[0]", "episodes_per_seed=2", "workers=1", f"report={tmp_path / 'r.md'}"]
    overrides += ["ood_scenes=[{name: dark, scene: {light_scale: 0.3}}]"]
    run_evaluate(load_config(EvaluateConfig, "evaluate", None, overrides), progress=False)
    out = tmp_path / "view"
    assert roboscape_cli.main(["view", f"path={tmp_path / 'r.md'}", f"out={out}"]) == 0
    got = read_back(out)
    results = json.loads((tmp_path / "r.json").read_text())["episodes"]
    actors = sorted({r["actor"] for r in results})
    assert len(got["/evaluation/episode"]) == len(results) == 2 * 2 * len(actors)  # 2 scenes x 2 episodes
    for actor in actors:
        flags = [m.data for _, m in got[f"/evaluation/{actor}/success"]]
        assert flags == [r["success"] for r in results if r["actor"] == actor]
    assert {"/evaluation/in_domain/clips", "/evaluation/dark/clips"} <= set(got)
    with Image.open(tmp_path / "r_dark.gif") as gif:
        assert len(got["/evaluation/dark/clips"]) == gif.n_frames
        assert pixels(got["/evaluation/dark/clips"][0][1]).shape == (gif.height, gif.width, 3)


@pytest.mark.slow
def test_bad_input_is_one_line_and_leaves_nothing(dataset, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.png").write_bytes(b"")
    out = tmp_path / "views" / "v"
    assert_one_line_error(cli("view", f"path={photos}", f"out={out}"), "not a dataset", "world-model run", "evaluation")
    assert_one_line_error(cli("view", f"path={tmp_path / 'nowhere'}", f"out={out}"), "no such file or folder")
    assert_one_line_error(cli("view", f"out={out}"), "no path given")
    assert not out.exists()
    assert cli("view", f"path={dataset}", f"out={out}", "episodes=1").returncode == 0
    assert_one_line_error(cli("view", f"path={dataset}", f"out={out}"), "exists", "overwrite=true")
    assert cli("view", f"path={dataset}", f"out={out}", "episodes=1", "overwrite=true").returncode == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["v"]  # no partial folder left
