"""The physics-sim batched env: goal frames, Meta-World's reward over chunks, same-step autoreset."""

import numpy as np
import pytest
import torch

from roboscape_r_ros.envs.metaworld_env import EnvConfig
from roboscape_r_ros.rl.goals import ExpertGoal, Goal
from roboscape_r_ros.rl.sim_env import SimEnvConfig, SimVectorEnv
from roboscape_r_ros.rl.vec import EnvContractError, check_env

TASKS = ["reach-v3", "push-v3"]


def make(max_steps=60, goal_source=None, seed=0):
    cfg = SimEnvConfig(env=EnvConfig(tasks=TASKS, resolution=32, max_steps=max_steps), num_envs=2, seed=seed)
    return SimVectorEnv(cfg, goal_source)


@pytest.fixture(scope="module")
def pair():
    first, twin = make(), make()
    yield first, twin
    first.close()
    twin.close()


def test_reset_gives_frames_and_expert_goal_frames(pair):
    env, _ = pair
    check_env(env)
    obs, info = env.reset(seed=5)
    assert env.tasks == TASKS and info["task"].tolist() == TASKS
    for key in ("image", "goal"):
        assert obs[key].shape == (2, 32, 32, 3) and obs[key].dtype == np.uint8
    assert (obs["image"] != obs["goal"]).any(axis=(1, 2, 3)).all()  # the goal shows the task done
    # the goal is the expert's end frame from this episode's own reset seed
    goal = ExpertGoal()(env.envs[0], env.episode_seeds[0])
    assert goal.expert_success
    np.testing.assert_array_equal(goal.image, obs["goal"][0])


def test_chunk_reward_is_the_sum_of_its_steps(pair):
    env, twin = pair
    env.reset(seed=7)
    twin.reset(seed=7)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (2, 3, 4)).astype(np.float32)  # [N,K,A]
    obs, reward, terminated, truncated, info = env.step(torch.from_numpy(actions))  # torch input is accepted
    rewards = [twin.step(actions[:, k])[1] for k in range(3)]
    np.testing.assert_allclose(reward, np.sum(rewards, axis=0), rtol=1e-5)
    assert reward.shape == (2,) and reward.dtype == np.float32 and info["success"].shape == (2,)
    np.testing.assert_array_equal(obs["image"], twin._obs()["image"])


def test_same_step_autoreset_with_final_observations():
    fixed = lambda env, seed: Goal(env.reset(seed=seed)[0]["image"])  # noqa: E731 (a goal source needing no expert)
    env = make(max_steps=4, goal_source=fixed)
    try:
        env.reset(seed=1)
        seeds = list(env.episode_seeds)
        for _ in range(3):
            _, _, terminated, truncated, info = env.step(np.zeros((2, 4), np.float32))
            assert not truncated.any() and "final_obs" not in info
        # a 2-action chunk with 1 step left: the chunk stops at the step cap, the env resets in place
        obs, _, terminated, truncated, info = env.step(np.zeros((2, 2, 4), np.float32))
        assert truncated.all() and not terminated.any() and info["_final_obs"].all()
        assert info["final_obs"]["image"].shape == (2, 32, 32, 3)
        assert env.episode_seeds != seeds and all(e.steps == 0 for e in env.envs)
        with pytest.raises(EnvContractError, match=r"actions must be \[2,4\] or \[2,K,4\]"):
            env.step(np.zeros((2, 3)))
    finally:
        env.close()
