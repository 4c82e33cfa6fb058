"""Behaviour cloning on a tiny collected dataset, and the sim baseline (BC, then PPO in Meta-World) end to end."""

import json

import numpy as np
import pytest
import torch

from roboscape_r_ros.commands.collect import run_collect
from roboscape_r_ros.commands.train_policy import PolicyTrainConfig, run_sim_baseline
from roboscape_r_ros.config import ConfigError, from_dict, load_config
from roboscape_r_ros.data.collect import CollectConfig
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.rl.bc import (
    BCConfig,
    BCDataError,
    DemoSet,
    action_error,
    demo_episodes,
    random_colour,
    random_shift,
    train_bc,
)
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig, PolicyMismatchError

TINY_POLICY = dict(image_size=32, channels=[16, 32, 32], hidden=128)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl") / "tiny"
    run_collect(load_config(CollectConfig, "collect", "tiny", [f"output={root}"]), progress=False)
    return EpisodeDataset.open(root)


def test_demo_samples_pair_frames_with_goals_and_action_chunks(tiny_dataset):
    episodes = demo_episodes(tiny_dataset)
    assert all(tiny_dataset.episodes[i].success for i in episodes) and len(episodes) >= 2
    data = tiny_dataset.load_arrays()
    demos = DemoSet(tiny_dataset, episodes, chunk=3, goal="episode_end", seed=0)
    assert len(demos) == data.lengths[episodes].sum()
    obs, actions = demos.batch(np.arange(len(demos)))
    assert obs["image"].shape == obs["goal"].shape == (len(demos), 32, 32, 3) and actions.shape == (len(demos), 3, 4)
    last = data.starts[episodes[0]] + data.lengths[episodes[0]] - 1
    np.testing.assert_array_equal(obs["goal"][0].numpy(), data.frames[last])  # the episode's own last frame
    first = data.starts[episodes[0]]
    np.testing.assert_array_equal(actions[0].numpy(), data.actions[first : first + 3])
    # past the episode's end the chunk repeats its last action
    end = data.lengths[episodes[0]] - 1
    np.testing.assert_array_equal(actions[end].numpy(), np.repeat(data.actions[last][None], 3, axis=0))
    other = DemoSet(tiny_dataset, episodes, chunk=1, goal="same_task", seed=0)
    ends = {data.frames[data.starts[e] + data.lengths[e] - 1].tobytes() for e in episodes}
    assert {g.numpy().tobytes() for g in other.sample(32)[0]["goal"]} <= ends


def test_random_shift_moves_frame_and_goal_together():
    image = torch.zeros(2, 8, 8, 3, dtype=torch.uint8)
    image[:, 4, 4] = 255
    shifted = random_shift({"image": image, "goal": image.clone()}, 2, np.random.default_rng(0))
    assert torch.equal(shifted["image"], shifted["goal"]) and shifted["image"].shape == image.shape


def test_random_colour_scales_frame_and_goal_alike_within_its_range():
    grey = torch.full((64, 4, 4, 3), 100, dtype=torch.uint8)  # flat: contrast leaves it, the gains scale it
    obs = {"image": grey, "goal": grey.clone()}
    assert random_colour(obs, 0.0, np.random.default_rng(0)) is obs
    out = random_colour(obs, 0.3, np.random.default_rng(0))
    assert torch.equal(out["image"], out["goal"]) and out["image"].dtype == torch.uint8
    values = out["image"].float()
    assert values.min() >= 100 * 0.7**2 - 1 and values.max() <= 100 * 1.3**2 + 1
    channel_means = values.mean(dim=(1, 2))  # [64,3]: each sample gets its own cast
    assert (channel_means.std(0) > 5).all() and (channel_means[:, 0] != channel_means[:, 1]).any()
    with pytest.raises(ConfigError, match=r"bc.colour must lie in \[0, 1\), got 1.0"):
        from_dict(BCConfig, {"colour": 1.0}, prefix="bc.")


def test_bc_reduces_action_error(tiny_dataset):
    torch.manual_seed(0)
    policy = ImagePolicy(PolicyConfig(chunk=2, **TINY_POLICY))
    demos = DemoSet(tiny_dataset, demo_episodes(tiny_dataset), chunk=2, goal="episode_end", seed=0)
    before = action_error(policy, demos)
    cfg = BCConfig(dataset=str(tiny_dataset.root), steps=250, batch_size=32, lr=1e-3, shift=2, eval_every=125)
    history = train_bc(policy, tiny_dataset, cfg, progress=False)
    after = action_error(policy, demos)
    assert after < 0.35 * before, (before, after)
    held_out = [h["bc/held_out_action_mse"] for h in history]
    assert len(held_out) == 3 and held_out[-1] < held_out[0]


def test_bc_refuses_mismatched_sizes_and_datasets_without_demos(tiny_dataset, tmp_path):
    with pytest.raises(PolicyMismatchError, match=r"reads 64x64x3 frames, dataset .* gives 32x32x3"):
        train_bc(ImagePolicy(PolicyConfig(image_size=64)), tiny_dataset, BCConfig(steps=1), progress=False)
    with pytest.raises(PolicyMismatchError, match="emits 7-D actions, dataset .* takes 4-D actions"):
        policy = ImagePolicy(PolicyConfig(action_dim=7, **TINY_POLICY))
        train_bc(policy, tiny_dataset, BCConfig(steps=1), progress=False)
    overrides = [
        f"output={tmp_path / 'random'}",
        "episodes_per_task=1",
        "noisy_fraction=0",
        "failed_fraction=0",
        "random_fraction=1",
        "env.max_steps=10",
    ]
    run_collect(load_config(CollectConfig, "collect", "tiny", overrides), progress=False)
    with pytest.raises(BCDataError, match="no successful episode to clone"):
        train_bc(ImagePolicy(PolicyConfig(**TINY_POLICY)), EpisodeDataset.open(tmp_path / "random"), BCConfig(steps=1))


@pytest.mark.slow
def test_sim_baseline_runs_bc_then_ppo_in_meta_world(tiny_dataset, tmp_path):
    cfg = load_config(PolicyTrainConfig, "policy", "tiny", [f"bc.dataset={tiny_dataset.root}", f"output={tmp_path}"])
    path = run_sim_baseline(cfg, progress=False).checkpoint
    assert path == tmp_path / "policy.safetensors" and (tmp_path / "bc.safetensors").is_file()
    policy = ImagePolicy.load(path, action_dim=4, image_size=32)
    assert policy.cfg.channels == [8, 16, 16]
    summary = json.loads((tmp_path / "ppo.json").read_text())
    assert summary["final"]["decisions"] == 128 and summary["wall_s"] > 0
    assert np.isfinite(summary["final"]["loss/value"])
    assert list((tmp_path / "tensorboard").iterdir())
