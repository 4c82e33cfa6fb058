"""`roboscape-r` as a user runs it: a real collection, a bit-exact reload, and one clear line
(exit 2, no traceback) for each kind of bad input."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import REPO
from helpers.cli_runner import assert_one_line_error, cli
from roboscape_r_ros.cli import COMMANDS, main
from roboscape_r_ros.config import from_dict
from roboscape_r_ros.data.collect import CollectConfig, record_episode, task_rng
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.envs.metaworld_env import EnvConfig, PixelMetaWorldEnv
from roboscape_r_ros.rl.evaluate import EvaluateConfig, default_ood_scenes


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "tiny"
    result = cli("collect", "--preset", "tiny", f"output={out}")
    assert result.returncode == 0, result.stderr
    assert "episodes" in result.stdout and str(out) in result.stdout
    return out


@pytest.mark.slow
def test_collect_then_reload_gives_back_the_same_frames_and_actions(tiny_dataset):
    dataset = EpisodeDataset.open(tiny_dataset)
    cfg = CollectConfig(env=EnvConfig(tasks=["reach-v3"], resolution=32, max_steps=60), episodes_per_task=4)
    seeds = task_rng(cfg, "reach-v3").integers(2**31, size=cfg.episodes_per_task).tolist()
    stored = dataset.episode(0)
    env = PixelMetaWorldEnv("reach-v3", cfg.env)
    try:
        again = record_episode(env, stored.kind, cfg, seeds[0])
    finally:
        env.close()
    assert stored.frames.dtype == np.uint8 and stored.frames.shape[1:] == (32, 32, 3)
    np.testing.assert_array_equal(stored.frames, again.frames)  # lossless PNG: bit-exact
    np.testing.assert_array_equal(stored.actions, again.actions)
    np.testing.assert_array_equal(stored.done, again.done)


def test_inspect_summarises_a_dataset(tiny_dataset):
    result = cli("inspect", f"dataset={tiny_dataset}")
    assert result.returncode == 0, result.stderr
    assert re.search(r"episodes\s+4, \d+ frames", result.stdout), result.stdout


def test_inspect_names_a_truncated_data_file(tiny_dataset, tmp_path):
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(tiny_dataset), str(broken)], check=True)
    data_file = next((broken / "data").rglob("*.parquet"))
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])
    assert_one_line_error(
        cli("inspect", f"dataset={broken}"), str(data_file.relative_to(broken)), "truncated or corrupt"
    )


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("env.tasks=reach-v3,fly-to-the-moon-v3", ["unknown task 'fly-to-the-moon-v3'"]),
        ("env.scene.table_rgba=[1.0, 0.5]", ["table_rgba"]),
        ("env.scene.light_scale=-2", ["light_scale"]),
        ("episodes_per_task=many", ["episodes_per_task", "integer"]),
        ("env.resolutoin=32", ["unknown option 'env.resolutoin'"]),
    ],
)
def test_bad_collect_options_give_one_clear_line(override, fragments):
    assert_one_line_error(cli("collect", "--preset", "tiny", override, "--print-config"), *fragments)


@pytest.mark.slow
def test_unwritable_output_folder_gives_one_clear_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert_one_line_error(cli("collect", "--preset", "tiny", f"output={blocker}/ds"), str(blocker), "not writable")


def test_missing_dataset_gives_one_clear_line(tmp_path):
    assert_one_line_error(cli("inspect", f"dataset={tmp_path / 'nothing'}"), str(tmp_path / "nothing"))


@pytest.mark.slow
def test_a_killed_collection_leaves_no_dataset_that_loads(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "roboscape_r_ros.cli",
            "collect",
            "--preset",
            "tiny",
            f"output={out}",
            "episodes_per_task=50",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(tmp_path.glob(".killed*")):
        time.sleep(0.2)
    time.sleep(2.0)  # some episodes written into the temporary folder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and any(tmp_path.glob(".killed*.partial"))
    assert_one_line_error(cli("inspect", f"dataset={out}"), str(out))
    # The next collection into the same place clears the dead writer's leftovers.
    assert cli("collect", "--preset", "tiny", f"output={out}", "episodes_per_task=1").returncode == 0
    assert not any(tmp_path.glob(".killed*.partial"))


def test_help_explains_every_option():
    result = cli("collect", "--help")
    assert result.returncode == 0
    for name in (
        "env.tasks",
        "env.resolution",
        "env.camera",
        "env.scene.table_rgba",
        "episodes_per_task",
        "random_fraction",
        "video",
    ):
        assert name in result.stdout, name


def test_help_prints_a_list_of_groups_one_readable_item_a_line(capsys):
    """evaluate's ood_scenes default was one line of Python reprs; each item now reads as the YAML that sets it."""
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("  ood_scenes (list, default:)") + 1
    items = [line.strip() for line in lines[start:] if line.startswith("      - ")]
    assert len(items) == len(default_ood_scenes()) and all(len(line) <= 100 for line in items)
    assert "SceneVariation(" not in "\n".join(lines)
    parsed = yaml.safe_load("\n".join(items))
    assert from_dict(EvaluateConfig, {"ood_scenes": parsed}).ood_scenes == default_ood_scenes()


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_every_command_prints_its_help(command, capsys):
    """--help lists the options even where the defaults alone do not validate (export, calibrate-ood)."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and "presets:" in capsys.readouterr().out
