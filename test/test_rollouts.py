"""`roboscape-r rollouts`: a policy's sim episodes after a base dataset's, recorded and labelled as collect
records its episodes."""

import dataclasses
import json

import numpy as np
import pytest

from roboscape_r_ros import cli
from roboscape_r_ros.commands.collect import run_collect
from roboscape_r_ros.commands.rollouts import RolloutsConfig, run_rollouts
from roboscape_r_ros.config import load_config
from roboscape_r_ros.data.collect import CollectConfig, record_episode
from roboscape_r_ros.data.done_labels import done_labels
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.envs.metaworld_env import PixelMetaWorldEnv
from roboscape_r_ros.rl.evaluate import EpisodeRunner, EvaluateConfig, Recording, episode_specs
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig
from roboscape_r_ros.world_model.data import stratified_split


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollouts") / "tiny"
    run_collect(load_config(CollectConfig, "collect", "tiny", [f"output={root}"]), progress=False)
    return root


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "p.safetensors"
    return ImagePolicy(PolicyConfig(image_size=32, channels=[8, 8], hidden=16)).save(path)


def overrides(base, policy, output, *extra):
    return [f"base={base}", f"policy={policy}", f"output={output}", *extra]


@pytest.fixture(scope="module")
def rolled(base, policy, tmp_path_factory):
    output = tmp_path_factory.mktemp("out") / "rollouts"
    cfg = load_config(RolloutsConfig, "rollouts", "tiny", overrides(base, policy, output, "episodes_per_task=3"))
    return output, run_rollouts(cfg, progress=False), cfg


@pytest.mark.slow
def test_base_episodes_come_first_unchanged(rolled, base):
    output, summary, _ = rolled
    old, new = EpisodeDataset.open(base), EpisodeDataset.open(output)
    assert new.num_episodes == old.num_episodes + 3 == summary.dataset.episodes
    for i in range(old.num_episodes):
        a, b = old.episode(i), new.episode(i)
        np.testing.assert_array_equal(a.frames, b.frames)  # lossless: bit-exact
        for name in ("actions", "states", "done", "subtask_index"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert (a.kind, a.success, a.task, a.labelled) == (b.kind, b.success, b.task, b.labelled)
    info = json.loads((output / "meta" / "info.json").read_text())["rollouts"]
    assert (info["base_episodes"], info["base_frames"]) == (old.num_episodes, old.num_frames)
    assert info["seed"] == 10_000 and info["deterministic"] is False and len(info["reset_seeds"]) == 3


def test_policy_episodes_carry_kind_and_labels_the_sim_agrees_with(rolled, base):
    output, summary, cfg = rolled
    dataset = EpisodeDataset.open(output)
    first = EpisodeDataset.open(base).num_episodes
    seeds = json.loads((output / "meta" / "info.json").read_text())["rollouts"]["reset_seeds"]
    env = PixelMetaWorldEnv("reach-v3", cfg.env)
    try:
        for index, seed in zip(range(first, dataset.num_episodes), seeds):
            episode = dataset.episode(index)
            assert episode.kind == "policy" and episode.task == "reach-v3" and episode.labelled
            # the recorded actions replayed from the reset seed: the same frames and Meta-World's success flag
            obs, _ = env.reset(seed=seed)
            flags = []
            for t, action in enumerate(episode.actions):
                np.testing.assert_array_equal(obs["image"], episode.frames[t])
                obs, _, _, _, info = env.step(action)
                flags.append(info["success"])
            success_frame = flags.index(True) + 1 if True in flags else None
            success = success_frame is not None and success_frame < len(flags)
            assert episode.success == success
            expected, _ = done_labels(len(flags), [success_frame] if success else [])
            np.testing.assert_array_equal(episode.done, expected)
            assert len(flags) == cfg.env.max_steps or success  # a failure runs to the step cap
    finally:
        env.close()
    assert summary.episodes == 3 and summary.base_episodes == first
    assert summary.frames == sum(dataset.episodes[i].length for i in range(first, dataset.num_episodes))
    assert f"rollouts  3 policy episodes after the base's {first}" in str(summary)


def test_inspect_and_the_world_model_split_accept_policy_episodes(rolled, capsys):
    output, _, _ = rolled
    assert cli.main(["inspect", f"dataset={output}"]) == 0
    assert "policy 3 (" in capsys.readouterr().out
    dataset = EpisodeDataset.open(output)
    train, held_out = stratified_split(dataset.episodes, 0.34, seed=0)
    assert sum(dataset.episodes[i].kind == "policy" for i in held_out) == 1


def test_a_recording_keeps_episodes_as_collect_records_them():
    """The scripted expert through evaluate's runner with a Recording: the same episode collect records."""
    collect = load_config(CollectConfig, "collect", "tiny", [])
    cfg = EvaluateConfig(
        random_actor=False, expert_actor=True, env=collect.env, ood_scenes=[], seeds=[7], episodes_per_seed=1
    )
    runner = EpisodeRunner(cfg, recording=Recording("expert", collect.steps_after_success))
    try:
        outcome = runner.run(episode_specs(cfg)[0])
    finally:
        runner.close()
    recorded = outcome.recorded[0]
    env = PixelMetaWorldEnv("reach-v3", collect.env)
    try:
        collected = record_episode(env, "expert", collect, outcome.results[0].reset_seed)
    finally:
        env.close()
    assert recorded.success and outcome.results[0].success
    for field in dataclasses.fields(collected):
        a, b = getattr(recorded, field.name), getattr(collected, field.name)
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, field.name
    assert outcome.results[0].steps < len(recorded.actions)  # the outcome counts steps to the success


@pytest.mark.slow
def test_rollouts_are_the_same_with_workers(rolled, base, policy, tmp_path):
    output, _, cfg = rolled
    parallel = run_rollouts(dataclasses.replace(cfg, output=str(tmp_path / "p"), workers=2), progress=False)
    a, b = EpisodeDataset.open(output), EpisodeDataset.open(parallel.dataset.root)
    assert a.num_episodes == b.num_episodes
    np.testing.assert_array_equal(a.load_arrays().frames, b.load_arrays().frames)
    np.testing.assert_array_equal(a.load_arrays().actions, b.load_arrays().actions)


def test_bad_inputs_end_in_one_line(rolled, base, policy, tmp_path, capsys):
    output, _, _ = rolled
    wide = ImagePolicy(PolicyConfig(image_size=64, channels=[8, 8], hidden=16)).save(tmp_path / "wide.safetensors")
    cases = [
        (overrides(base, tmp_path / "missing.safetensors", tmp_path / "a"), "missing.safetensors"),
        (overrides(base, wide, tmp_path / "b"), "64px"),
        (overrides(base, policy, output, "overwrite=false"), "folder exists"),
        (overrides(base, policy, base), "is the base dataset"),
        (overrides(tmp_path / "nothing", policy, tmp_path / "c"), "no such folder"),
        (overrides(base, policy, tmp_path / "d", "env.resolution=64"), "env.resolution is 64"),
    ]
    for args, fragment in cases:
        capsys.readouterr()
        assert cli.main(["rollouts", "--preset", "tiny", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
