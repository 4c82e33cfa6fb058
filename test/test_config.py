"""Presets that build on other presets with `_base`: merge order, cycles, unknown bases, overrides last."""

import pytest

from roboscape_r_ros.commands.train_wm import TrainWMConfig
from roboscape_r_ros.config import ConfigError, load_config
from roboscape_r_ros.world_model.config import WorldModelConfig


def write(path, text):
    path.write_text(text)
    return str(path)


def test_a_base_is_merged_recursively_and_the_own_keys_win(tmp_path):
    tiny = load_config(WorldModelConfig, "world_model", "tiny", [])
    write(tmp_path / "common.yaml", "name: common\nmedia_every: 7\n")
    preset = write(
        tmp_path / "run.yaml",
        "_base: common.yaml\nname: mine\nmodel:\n  _base: world_model/tiny\n  image_size: 32\n  train: {lr: 0.5}\n",
    )
    cfg = load_config(TrainWMConfig, "train_wm", preset, [])
    assert (cfg.name, cfg.media_every) == ("mine", 7)  # own key over the base's; the base's other key kept
    assert cfg.model.image_size == 32 and cfg.model.train.lr == 0.5
    assert cfg.model.train.batch_size == tiny.train.batch_size  # a sibling of an own nested key stays
    assert cfg.model.text == tiny.text and cfg.model.dynamics == tiny.dynamics


def test_a_base_can_have_a_base_and_a_bare_name_is_in_the_same_folder(tmp_path):
    write(tmp_path / "first.yaml", "_base: tiny\ncontext_length: 6\n")  # world_model/tiny: the command's folder
    preset = write(tmp_path / "second.yaml", "_base: first.yaml\nframe_skip: 3\n")
    cfg = load_config(WorldModelConfig, "world_model", preset, [])
    tiny = load_config(WorldModelConfig, "world_model", "tiny", [])
    assert (cfg.context_length, cfg.frame_skip, cfg.dynamics) == (6, 3, tiny.dynamics)


def test_overrides_apply_after_the_bases(tmp_path):
    preset = write(tmp_path / "run.yaml", "model:\n  _base: world_model/tiny\n  image_size: 32\n")
    cfg = load_config(TrainWMConfig, "train_wm", preset, ["model.image_size=48", "model.dynamics.dim=32"])
    assert (cfg.model.image_size, cfg.model.dynamics.dim, cfg.model.dynamics.layers) == (48, 32, 2)


def test_a_cycle_is_one_line_naming_the_chain(tmp_path):
    write(tmp_path / "a.yaml", "_base: b.yaml\n")
    write(tmp_path / "b.yaml", "_base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: \S*a\.yaml -> \S*b\.yaml -> \S*a\.yaml$") as err:
        load_config(WorldModelConfig, "world_model", str(tmp_path / "a.yaml"), [])
    assert "\n" not in str(err.value)


def test_an_unknown_base_names_the_presets_there_are(tmp_path):
    preset = write(tmp_path / "run.yaml", "model: {_base: world_model/tiniest}\n")
    with pytest.raises(ConfigError, match=r"unknown preset 'tiniest' for 'world_model' \(available: base, cpu, "):
        load_config(TrainWMConfig, "train_wm", preset, [])
    preset = write(tmp_path / "run.yaml", "model: {_base: [world_model/tiny]}\n")
    with pytest.raises(ConfigError, match="'_base' in preset file .*run.yaml must name a preset"):
        load_config(TrainWMConfig, "train_wm", preset, [])
