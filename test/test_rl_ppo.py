"""PPO end to end on the point-mass toy env (returns must improve), and the batched-env contract."""

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from helpers.toy_env import PointMassEnv
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig
from roboscape_r_ros.rl.ppo import PPOConfig, RewardScaler, train_ppo
from roboscape_r_ros.rl.vec import EnvContractError, check_env, final_obs


def mean_return(stats):
    return float(np.mean([s["episode/return"] for s in stats if "episode/return" in s]))


@pytest.mark.slow
@pytest.mark.parametrize("chunk, iterations", [(1, 24), (2, 16)])
def test_ppo_improves_returns_on_the_point_mass(chunk, iterations):
    """Random actions average about -16 per episode; moving to the goal frame's point scores about -3."""
    torch.manual_seed(0)
    env = PointMassEnv(num_envs=16, image_size=16, max_steps=16, seed=0)
    policy = ImagePolicy(
        PolicyConfig(image_size=16, action_dim=2, chunk=chunk, channels=[16, 32], hidden=64, init_log_std=-0.5)
    )
    cfg = PPOConfig(total_steps=16 * 32 * iterations, num_steps=32, lr=3e-3, critic_lr=3e-3, seed=0)
    stats = train_ppo(policy, env, cfg, progress=False)
    assert len(stats) == iterations
    first, last = mean_return(stats[:2]), mean_return(stats[-4:])
    assert first < -12, first
    assert last > first + 6, (first, last)
    assert mean_return(stats[-4:]) > -9
    assert np.mean([s["episode/success"] for s in stats[-4:]]) > np.mean([s["episode/success"] for s in stats[:2]])
    assert stats[-1]["control_steps"] == stats[-1]["decisions"] * chunk


def test_point_mass_chunks_sum_rewards_and_stop_at_episode_end():
    env = PointMassEnv(num_envs=2, image_size=8, max_steps=3, speed=0.1, radius=0.0, seed=1)
    env.reset()
    start = env.position.clone()
    twin = PointMassEnv(num_envs=2, image_size=8, max_steps=3, speed=0.1, radius=0.0, seed=1)
    twin.reset()
    actions = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]] * 2)  # [N=2,K=2,A=2]
    _, reward, terminated, truncated, info = env.step(actions)
    expected = sum(twin.step(actions[:, k])[1] for k in range(2))
    torch.testing.assert_close(reward, expected)
    torch.testing.assert_close(env.position, (start + 0.1).clamp(-1, 1))
    # a chunk longer than the episode stops where the episode ends (3 steps: 1 left)
    _, reward, terminated, truncated, info = env.step(actions)
    assert truncated.all() and not terminated.any() and info["_final_obs"].all()
    assert env.steps.tolist() == [0, 0]  # autoreset in the same step


def test_reward_scaler_brings_large_rewards_to_unit_scale():
    scaler = RewardScaler(num_envs=4, gamma=0.9, device=torch.device("cpu"))
    ended = torch.zeros(4, dtype=torch.bool)
    scaled = [scaler(torch.full((4,), 100.0) + torch.randn(4), ended) for _ in range(200)]
    assert 0.05 < scaled[-1].abs().mean().item() < 2.0


def test_env_contract_checks():
    class NextStepEnv(PointMassEnv):
        metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    with pytest.raises(EnvContractError, match="PPO needs same-step autoreset"):
        check_env(NextStepEnv(num_envs=1))
    with pytest.raises(EnvContractError, match=r"actions must be \[2,K,2\]"):
        PointMassEnv(num_envs=2).step(torch.zeros(2, 3))


def test_final_obs_accepts_gymnasium_object_arrays():
    obs = {"image": torch.zeros(3, 2, 2, 3, dtype=torch.uint8), "goal": torch.zeros(3, 2, 2, 3, dtype=torch.uint8)}
    ended = torch.tensor([False, True, False])
    last = {"image": np.full((2, 2, 3), 7, np.uint8), "goal": np.full((2, 2, 3), 9, np.uint8)}
    info = {"final_obs": np.array([None, last, None], dtype=object), "_final_obs": ended.numpy()}
    out = final_obs(info, obs, ended)
    assert out["image"][1].eq(7).all() and out["goal"][1].eq(9).all() and out["image"][[0, 2]].eq(0).all()
    with pytest.raises(EnvContractError, match="no 'final_obs'"):
        final_obs({}, obs, ended)
