"""The goal-conditioned image policy: shapes, the Gaussian, checkpoints, and clear errors on mismatches."""

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from helpers.toy_env import PointMassEnv
from roboscape_r_ros.commands.train_policy import PolicyTrainConfig
from roboscape_r_ros.config import ConfigError, available_presets, from_dict, load_config
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyCheckpointError, PolicyConfig, PolicyMismatchError
from roboscape_r_ros.rl.ppo import PPOConfig, train_ppo

SMALL = dict(image_size=16, channels=[8, 16], hidden=32)
SHORT = PPOConfig(total_steps=8, num_steps=4)


def frames(batch, size=16, seed=0):
    rng = np.random.default_rng(seed)
    shape = (batch, size, size, 3)
    return {key: torch.from_numpy(rng.integers(0, 256, shape, dtype=np.uint8)) for key in ("image", "goal")}


@pytest.mark.parametrize("chunk", [1, 3])
def test_shapes_and_log_probabilities(chunk):
    torch.manual_seed(0)
    policy = ImagePolicy(PolicyConfig(action_dim=4, chunk=chunk, **SMALL))
    obs = frames(5)
    action, logprob, entropy, value = policy.get_action_and_value(obs)
    assert action.shape == (5, chunk, 4) and logprob.shape == entropy.shape == value.shape == (5,)
    mean = policy.mean(obs)
    assert mean.shape == (5, chunk, 4) and mean.abs().max() < 1
    # the log-prob is the unclipped sample's, summed over the chunk's K*A dimensions
    expected = Normal(mean.flatten(1), policy.log_std.exp()).log_prob(action.flatten(1)).sum(-1)
    torch.testing.assert_close(logprob, expected)
    _, again, _, _ = policy.get_action_and_value(obs, action)
    torch.testing.assert_close(again, logprob)
    assert policy.clip_actions(action * 10).abs().max() <= 1.0


def test_checkpoint_round_trip(tmp_path):
    policy = ImagePolicy(PolicyConfig(action_dim=3, chunk=2, **SMALL))
    with torch.no_grad():
        policy.log_std.fill_(-0.3)
    path = policy.save(tmp_path / "p.safetensors")
    loaded = ImagePolicy.load(path, action_dim=3, image_size=16)
    assert loaded.cfg == policy.cfg
    obs = frames(2)
    torch.testing.assert_close(loaded.mean(obs), policy.mean(obs))
    torch.testing.assert_close(loaded.value(obs), policy.value(obs))
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, nothing left behind


def test_mismatched_action_dimension_is_a_clear_error(tmp_path):
    path = ImagePolicy(PolicyConfig(action_dim=4, **SMALL)).save(tmp_path / "p.safetensors")
    with pytest.raises(PolicyMismatchError, match="emits 4-D actions, expected 7-D"):
        ImagePolicy.load(path, action_dim=7)
    # the point-mass env takes 2-D actions: PPO refuses before stepping it
    policy = ImagePolicy.load(path)
    with pytest.raises(PolicyMismatchError, match="the policy emits 4-D actions, PointMassEnv takes 2-D actions"):
        train_ppo(policy, PointMassEnv(num_envs=2, image_size=16), SHORT, progress=False)
    assert issubclass(PolicyMismatchError, RoboscapeError)


def test_mismatched_frame_size_is_a_clear_error(tmp_path):
    policy = ImagePolicy(PolicyConfig(action_dim=2, **SMALL))
    with pytest.raises(PolicyMismatchError, match=r"reads 16x16x3 frames, 'image' is \[32, 32, 3\]"):
        policy.mean(frames(1, size=32))
    with pytest.raises(PolicyMismatchError, match="reads 16x16x3 frames, PointMassEnv gives 32x32x3"):
        train_ppo(policy, PointMassEnv(num_envs=2, image_size=32), SHORT, progress=False)
    with pytest.raises(PolicyMismatchError, match="reads 16px frames, expected 64px"):
        ImagePolicy.load(policy.save(tmp_path / "p.safetensors"), image_size=64)


def test_bad_checkpoints_are_refused(tmp_path):
    with pytest.raises(PolicyCheckpointError, match="no such policy checkpoint"):
        ImagePolicy.load(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00not a safetensors file")
    with pytest.raises(PolicyCheckpointError, match="not a readable safetensors file"):
        ImagePolicy.load(garbage)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(PolicyCheckpointError, match="not a policy checkpoint"):
        ImagePolicy.load(foreign)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"chunk": 0}, "policy.chunk must be >= 1"),
        ({"channels": [8, 0]}, r"policy.channels must be >= 1, got \[8, 0\]"),
        ({"image_size": 4, "channels": [8, 8, 8]}, "too small"),
    ],
)
def test_bad_policy_config(fields, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(PolicyConfig, fields, prefix="policy.")


def test_policy_presets_load():
    assert {"tiny", "demo", "small"} <= set(available_presets("policy"))
    for name in ("tiny", "demo", "small"):
        cfg = load_config(PolicyTrainConfig, "policy", name, [])
        assert cfg.policy.image_size == cfg.sim.env.resolution
