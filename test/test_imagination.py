"""The imagination env and the endogenous reward: contract, resets, chunks, goals, bad input.

Plumbing only, on a tiny world model with random weights over a toy dataset (seconds); the measured
effects (PPO improves returns in imagination, reward sanity) are in test_imagination_ppo.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.toy_world import render, write_run, write_toy_dataset
from roboscape_r_ros.commands.reward_sanity import sliding_done
from roboscape_r_ros.commands.train_policy import PolicyTrainConfig, run_imagination_ppo
from roboscape_r_ros.config import ConfigError, from_dict, load_config
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.imagination import (
    ActionError,
    EndogenousReward,
    GoalImageError,
    ImaginationConfig,
    ImaginationEnv,
    ImaginationError,
    RewardConfig,
    WorldModelMismatchError,
    endogenous_reward,
    make_imagination_env,
)
from roboscape_r_ros.perception.distance import PerceptionConfig
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig
from roboscape_r_ros.rl.ppo import PPOConfig, train_ppo
from roboscape_r_ros.rl.vec import check_env
from roboscape_r_ros.world_model import WorldModel, WorldModelConfig

SSIM = RewardConfig(perception=PerceptionConfig(backend="ssim"))
NEVER_DONE = RewardConfig(perception=PerceptionConfig(backend="ssim"), done_threshold=1.0)  # random done heads vary


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_toy_dataset(tmp_path_factory.mktemp("imagination") / "toy", {"expert": 4, "noisy": 4, "random": 4})
    return EpisodeDataset.open(root)


def tiny_wm(*overrides: str) -> WorldModel:
    torch.manual_seed(0)
    cfg = load_config(
        WorldModelConfig, "world_model", "tiny", ["image_size=32", "action_dim=2", "context_length=3", *overrides]
    )
    return WorldModel(cfg).eval()


@pytest.fixture(scope="module")
def wm():
    return tiny_wm()


def make_env(wm, dataset, **kwargs) -> ImaginationEnv:
    goal_image = kwargs.pop("goal_image", None)
    cfg = ImaginationConfig(**{"num_envs": 3, "max_steps": 4, "reward": NEVER_DONE, **kwargs})
    return ImaginationEnv(wm, dataset, list(range(dataset.num_episodes)), cfg, goal_image=goal_image)


# -- the env contract ------------------------------------------------------------------------------
def test_env_follows_the_batched_env_contract_and_trains_with_ppo(wm, dataset):
    env = make_env(wm, dataset)  # goal = goal_model (default)
    check_env(env)
    assert env.describe()["goal_source"] == "goal_model" and "goal model's done fired for only" in env.warnings[0]
    assert env.metadata["autoreset_mode"].name == "SAME_STEP" and env.action_dim == 2 and env.image_shape == (32, 32, 3)
    obs, info = env.reset(seed=0)
    arrays = dataset.load_arrays()
    for i, e in enumerate(info["episode"]):
        assert obs["image"].dtype == torch.uint8 and obs["image"].shape == (3, 32, 32, 3)
        assert obs["image"].device == wm.device and obs["goal"].device == wm.device
        # first observation: the last real context frame (2 frames, frame_skip 1, starting at frame 0)
        np.testing.assert_array_equal(obs["image"][i].numpy(), arrays.frames[arrays.starts[e] + 1])
        imagined = wm.imagine_goal(
            arrays.frames[arrays.starts[e]][None],
            [dataset.episodes[e].instruction],
            max_steps=int(arrays.lengths.max() - 1) + 4,
        )
        assert torch.equal(obs["goal"][i], imagined.goal[0])
    for t in range(4):
        obs, reward, terminated, truncated, info = env.step(torch.zeros(3, 2))
        assert reward.shape == (3,) and reward.dtype == torch.float32 and info["reward_backend"] == "ssim"
        assert not terminated.any() and truncated.all() == (t == 3)
    # truncated at the cap: final_obs holds the last imagined frame, obs the next episode's first frame
    assert info["_final_obs"].all() and info["final_obs"]["image"].shape == (3, 32, 32, 3)
    assert env.steps.tolist() == [0, 0, 0] and env.world_steps == 12 and env.control_steps == 12
    torch.manual_seed(0)
    policy = ImagePolicy(PolicyConfig(image_size=32, action_dim=2, channels=[8, 8], hidden=16))
    stats = train_ppo(policy, env, PPOConfig(total_steps=3 * 6 * 2, num_steps=6, num_minibatches=2), progress=False)
    assert len(stats) == 2 and all(np.isfinite(s["loss/value"]) for s in stats) and "episode/return" in stats[-1]


def test_resets_encode_real_windows_frame_skip_apart_with_mean_actions(dataset):
    wm2 = tiny_wm("frame_skip=2")
    env = make_env(wm2, dataset, num_envs=2, context_frames=2, start_fraction=1.0, goal="demo")
    arrays = dataset.load_arrays()
    assert env.span == 3 and all(arrays.lengths[e] >= 3 for e in env.pool.index)
    pool_rows, starts = np.array([0, len(env.pool.index) - 1]), np.array([0, 1])
    frames, actions = env._windows(pool_rows, starts)
    for j, (p, s) in enumerate(zip(pool_rows, starts)):
        first = arrays.starts[env.pool.index[p]] + s
        np.testing.assert_array_equal(frames[j].numpy(), arrays.frames[[first, first + 2]])
        np.testing.assert_allclose(actions[j, 0].numpy(), arrays.actions[first : first + 2].mean(0), rtol=1e-6)
    # resets draw windows inside their episodes, and the env's first step is the model's step from them
    starts = set()
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        starts |= set(info["window_start"].tolist())
        assert all(0 <= s <= arrays.lengths[e] - 3 for e, s in zip(info["episode"], info["window_start"]))
    assert len(starts) > 1  # start_fraction=1: not always the first frame
    first = arrays.starts[info["episode"]] + info["window_start"]  # [2]
    frames = torch.from_numpy(arrays.frames[np.stack([first, first + 2], 1)])
    actions = torch.from_numpy(np.stack([arrays.actions[f : f + 2].mean(0, keepdims=True) for f in first]))
    assert torch.equal(obs["image"], frames[:, -1])
    action = torch.tensor([[0.5, -0.5], [-1.0, 1.0]])
    _, expected, done = wm2.step(wm2.encode_context(frames, actions), action)
    chunk = torch.stack([action, action], 1)  # K=2 control steps = one world-model step of their mean
    obs, reward, _, _, info = env.step(chunk)
    assert torch.equal(obs["image"], expected) and info["world_steps"].tolist() == [1, 1]
    torch.testing.assert_close(info["done_probability"], done.float())


def test_resetting_some_rows_leaves_the_others_untouched(wm, dataset):
    a, b = make_env(wm, dataset, num_envs=3), make_env(wm, dataset, num_envs=3)
    a.reset(seed=1)
    b.reset(seed=1)
    action = torch.tensor([[0.9, 0.0], [0.0, -0.9], [0.5, 0.5]])
    a.step(action)
    b.step(action)
    b._start(torch.tensor([0]))  # a new episode in row 0 only (State.replace)
    obs_a, *_ = a.step(action)
    obs_b, *_ = b.step(action)
    assert torch.equal(obs_a["image"][1:], obs_b["image"][1:])


def test_chunks_sum_rewards_and_stop_at_the_step_cap(wm, dataset):
    a, b = make_env(wm, dataset, max_steps=5), make_env(wm, dataset, max_steps=5)
    a.reset(seed=2)
    b.reset(seed=2)
    chunk = torch.tensor([[0.8, 0.0], [0.0, 0.8], [-0.8, -0.8]]).expand(3, 3, 2)  # [N,K,A]
    obs, reward, terminated, truncated, info = a.step(chunk)
    expected = sum(b.step(chunk[:, k])[1] for k in range(3))
    torch.testing.assert_close(reward, expected)
    assert info["world_steps"].tolist() == [3, 3, 3] and not truncated.any()
    # 2 steps left before the cap: the chunk stops there, its third action is dropped
    obs, reward, terminated, truncated, info = a.step(chunk)
    assert truncated.all() and info["world_steps"].tolist() == [2, 2, 2] and a.world_steps == 15
    expected = sum(b.step(chunk[:, k])[1] for k in range(2))
    torch.testing.assert_close(reward, expected)


def test_done_terminates_the_episode_and_pays_the_bonus(wm, dataset):
    reward_cfg = RewardConfig(perception=PerceptionConfig(backend="ssim"), done_threshold=1e-6)
    env = make_env(wm, dataset, reward=reward_cfg)
    env.reset(seed=0)
    env.step(torch.zeros(3, 2))
    obs, reward, terminated, truncated, info = env.step(torch.zeros(3, 2))  # not the first step after reset
    assert terminated.all() and not truncated.any() and info["success"].all() and info["_final_obs"].all()
    assert (reward >= 10.0).all() and (info["done_bonus"] == 10.0).all()
    torch.testing.assert_close(reward, info["goal_alignment"] + info["done_bonus"])
    assert env.steps.tolist() == [0, 0, 0]  # reset in the same step


def test_done_must_hold_for_done_steps_before_the_bonus_and_the_end(wm, dataset):
    reward_cfg = RewardConfig(perception=PerceptionConfig(backend="ssim"), done_threshold=1e-6)
    env = make_env(wm, dataset, reward=reward_cfg, done_steps=3, max_steps=6)
    env.reset(seed=0)
    for _ in range(2):  # the done head fires from the first step; twice is not yet enough
        obs, reward, terminated, truncated, info = env.step(torch.zeros(3, 2))
        assert (info["done_probability"] >= 1e-6).all() and not terminated.any() and not info["success"].any()
        assert (info["done_bonus"] == 0).all()
    obs, reward, terminated, truncated, info = env.step(torch.zeros(3, 2))
    assert terminated.all() and info["success"].all() and (info["done_bonus"] == 10.0).all()
    assert env.done_streak.tolist() == [0, 0, 0]  # new episodes start their own count


def test_uncertainty_penalty_costs_token_entropy_above_the_held_out_reference(wm, dataset):
    plain, penalised = make_env(wm, dataset), make_env(wm, dataset, uncertainty_penalty=5.0, uncertainty_quantile=0.5)
    assert plain.uncertainty_reference is None and 0.0 < penalised.uncertainty_reference < 1.0
    assert penalised.describe()["uncertainty_reference"] == penalised.uncertainty_reference
    plain.reset(seed=1)
    penalised.reset(seed=1)
    excess = []
    for _ in range(3):
        action = torch.tensor([[0.9, -0.9], [0.0, 0.0], [-0.9, 0.9]])
        torch.manual_seed(0)
        _, reward, _, _, info = plain.step(action)
        torch.manual_seed(0)
        _, cost, _, _, penalised_info = penalised.step(action)
        entropy = penalised_info["token_entropy"]
        assert ((entropy >= 0) & (entropy <= 1)).all()
        torch.testing.assert_close(entropy, info["token_entropy"])
        over = (entropy - penalised.uncertainty_reference).clamp(min=0)
        torch.testing.assert_close(cost, reward - 5.0 * over)
        excess.append(over)
    # the reference is the entropy's median on the pool: some of the random model's frames lie above it
    assert torch.cat(excess).gt(0).any()


def test_actions_of_the_wrong_shape_or_nan_are_refused(wm, dataset):
    env = make_env(wm, dataset)
    env.reset()
    with pytest.raises(ActionError, match=r"actions must be \[3,2\] or \[3,K,2\], got \[3, 4\]"):
        env.step(torch.zeros(3, 4))
    with pytest.raises(ActionError, match="NaN"):
        env.step(torch.full((3, 2), float("nan")))


# -- the reward ------------------------------------------------------------------------------------
def test_endogenous_reward_formula_and_per_row_goal_cache():
    distance, done = torch.tensor([0.2, 0.5, 0.1]), torch.tensor([0.95, 0.9, 0.3])
    reward, bonus = endogenous_reward(distance, done)
    torch.testing.assert_close(reward, torch.tensor([10.8, 10.5, 0.9]))  # bonus at done >= 0.9 (paper)
    reward, _ = endogenous_reward(distance, done, bonus=1.0, threshold=0.95, offset=1.0, scale=2.0)
    torch.testing.assert_close(reward, torch.tensor([0.6, -1.0, -0.2]))
    with pytest.raises(ConfigError, match=r"reward.done_threshold must lie in \(0, 1\], got 0.0"):
        from_dict(RewardConfig, {"done_threshold": 0.0}, prefix="reward.")

    frames = torch.from_numpy(render(np.array([[0, 0], [3, 3], [1, 2]])))
    goals = torch.from_numpy(render(np.array([[0, 1], [3, 3], [2, 2]])))
    fn = EndogenousReward(SSIM, num_envs=3)
    fn.set_goals(None, goals[:1])  # one goal for every row
    fn.set_goals(torch.tensor([1, 2]), goals[1:])  # then rows 1, 2 get their own
    terms = fn(frames, torch.zeros(3))
    expected = fn.score(frames, goals, torch.zeros(3))
    torch.testing.assert_close(terms.reward, expected.reward)
    assert terms.backend == "ssim" and terms.distance[1] < 1e-4 and terms.alignment[0] < terms.alignment[1]
    only = fn(frames[2:], torch.ones(1), rows=torch.tensor([2]))  # a subset of rows against their cached goals
    torch.testing.assert_close(only.reward, expected.reward[2:] + 10.0)


# -- goals -----------------------------------------------------------------------------------------
def test_demo_goals_are_last_frames_of_successful_episodes_of_the_task(wm, dataset):
    env = make_env(wm, dataset, goal="demo", num_envs=6)
    arrays = dataset.load_arrays()
    success_ends = {
        arrays.frames[arrays.starts[m.index] + arrays.lengths[m.index] - 1].tobytes()
        for m in dataset.episodes
        if m.success
    }
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        for i, e in enumerate(info["episode"]):
            goal = obs["goal"][i].numpy()
            if dataset.episodes[e].success:
                np.testing.assert_array_equal(goal, arrays.frames[arrays.starts[e] + arrays.lengths[e] - 1])
            assert goal.tobytes() in success_ends


def test_image_goals_from_arrays_and_files(wm, dataset, tmp_path):
    image = render(np.array([2, 1]))
    env = make_env(wm, dataset, goal_image=image)
    obs, _ = env.reset()
    assert (obs["goal"] == torch.from_numpy(image)).all()
    Image.fromarray(image).save(tmp_path / "goal.png")
    env = make_env(wm, dataset, goal="image", goal_image=str(tmp_path / "goal.png"))
    assert (env.reset()[0]["goal"] == torch.from_numpy(image)).all() and env.describe()["goal_source"] == "image"


def test_bad_goal_images_are_refused_naming_the_expected_shape(wm, dataset, tmp_path):
    expected = r"expected an 8-bit RGB 32x32 image \(uint8 \[32,32,3\]\)"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.zeros((32, 32, 4), np.uint8)).save(tmp_path / "transparent.png")  # alpha 0
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cases = {
        str(tmp_path / "small.png"): r"16x16 pixels; " + expected,
        str(tmp_path / "grey.png"): r"pixel format L \(32x32\); " + expected,
        str(tmp_path / "transparent.png"): r"pixel format RGBA \(32x32\); " + expected,
        str(tmp_path / "broken.png"): r"not a readable image .*" + expected,
        str(tmp_path / "missing.png"): r"no such file \(" + expected,
    }
    for path, message in cases.items():
        with pytest.raises(GoalImageError, match=message):
            make_env(wm, dataset, goal="image", goal_image=path)
    with pytest.raises(GoalImageError, match=r"goal image array is float32 \[32, 32, 3\]; " + expected):
        make_env(wm, dataset, goal_image=np.zeros((32, 32, 3), np.float32))
    with pytest.raises(GoalImageError, match=r"uint8 \[64, 64, 3\]; " + expected):
        make_env(wm, dataset, goal_image=np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ConfigError, match="goal=image needs imagination.goal_image"):
        make_env(wm, dataset, goal="image")
    assert issubclass(GoalImageError, RoboscapeError)


# -- mismatches and empty inputs ---------------------------------------------------------------------
def test_a_world_model_of_another_action_dimension_or_frame_size_is_refused(dataset, tmp_path):
    with pytest.raises(WorldModelMismatchError, match=r"takes 3-D actions, dataset .*toy has 2-D actions \(dx, dy\)"):
        make_env(tiny_wm("action_dim=3"), dataset)
    with pytest.raises(WorldModelMismatchError, match=r"takes 64x64 frames, dataset .*toy has 32x32"):
        make_env(tiny_wm("image_size=64"), dataset)
    run = write_run(tmp_path / "run", tiny_wm(), dataset, held_out=[0, 5, 9])
    cfg = ImaginationConfig(world_model=str(run), num_envs=2, reward=SSIM)
    with pytest.raises(WorldModelMismatchError, match=r"safetensors takes 2-D actions, the policy emits 4-D"):
        make_imagination_env(cfg, action_dim=4)
    # train-imagination refuses before behaviour cloning spends any time
    out = tmp_path / "policy"
    policy_cfg = load_config(
        PolicyTrainConfig,
        "policy",
        "tiny",
        [
            f"output={out}",
            f"bc.dataset={dataset.root}",
            f"imagination.world_model={run}",
            "imagination.reward.perception.backend=ssim",
        ],
    )
    with pytest.raises(WorldModelMismatchError, match="the policy emits 4-D actions"):
        run_imagination_ppo(policy_cfg, progress=False)
    assert not (out / "bc.safetensors").exists()


def test_empty_or_unusable_episode_sets_give_clear_errors(wm, dataset, tmp_path):
    cfg = ImaginationConfig(num_envs=2, reward=SSIM)
    with pytest.raises(ImaginationError, match="no context episodes to start imagined episodes from"):
        ImaginationEnv(wm, dataset, [], cfg)
    short = [m.index for m in dataset.episodes if m.length < 3]
    if short:
        long_cfg = ImaginationConfig(num_envs=2, reward=SSIM, context_frames=2)
        with pytest.raises(ImaginationError, match="no context episode holds 3 frames"):
            ImaginationEnv(tiny_wm("frame_skip=2"), dataset, short, long_cfg)
    failures = [m.index for m in dataset.episodes if not m.success]
    with pytest.raises(ImaginationError, match="successful_only=true, but none of the context episodes succeeded"):
        ImaginationEnv(wm, dataset, failures, ImaginationConfig(num_envs=2, reward=SSIM, successful_only=True))
    # run folders: no held-out episodes, a split of another dataset, no checkpoint, an empty dataset folder
    run = write_run(tmp_path / "empty_split", wm, dataset, held_out=[])
    with pytest.raises(ImaginationError, match="no held-out episodes to start imagined episodes from"):
        make_imagination_env(ImaginationConfig(world_model=str(run), reward=SSIM))
    split = json.loads((run / "split.json").read_text())
    (run / "split.json").write_text(json.dumps({**split, "num_episodes": 99, "held_out": [1]}))
    with pytest.raises(ImaginationError, match="made for a dataset of 99 episodes"):
        make_imagination_env(ImaginationConfig(world_model=str(run), reward=SSIM))
    with pytest.raises(ImaginationError, match="no world-model checkpoint"):
        make_imagination_env(ImaginationConfig(world_model=str(tmp_path / "nowhere"), reward=SSIM))
    (tmp_path / "empty_dataset").mkdir()
    with pytest.raises(RoboscapeError, match="not a LeRobot dataset"):
        make_imagination_env(ImaginationConfig(world_model=str(run), dataset=str(tmp_path / "empty_dataset")))
    with pytest.raises(ConfigError, match="imagination.num_envs must be >= 1, got 0"):
        from_dict(ImaginationConfig, {"num_envs": 0}, prefix="imagination.")


def test_a_dataset_that_begins_with_the_runs_own_adds_its_new_episodes_as_contexts(wm, dataset, tmp_path):
    run = write_run(tmp_path / "run", wm, dataset, held_out=[1, 5])
    # the same 12 episodes (same seed, same order), then 2 more: e.g. a policy's rollouts appended
    extended = write_toy_dataset(tmp_path / "extended", {"expert": 4, "noisy": 4, "random": 6})
    cfg = ImaginationConfig(world_model=str(run), dataset=str(extended), reward=SSIM, num_envs=2)
    env, _ = make_imagination_env(cfg)
    assert env.pool.index.tolist() == [1, 5]
    env, _ = make_imagination_env(ImaginationConfig(**{**cfg.__dict__, "episodes": "held_out_and_added"}))
    assert env.pool.index.tolist() == [1, 5, 12, 13]
    # a dataset that does not begin with the run's episodes is refused
    other = write_toy_dataset(tmp_path / "other", {"noisy": 4, "expert": 4, "random": 6})
    with pytest.raises(ImaginationError, match="does not begin with them"):
        make_imagination_env(ImaginationConfig(**{**cfg.__dict__, "dataset": str(other)}))


# -- reward-sanity helpers -------------------------------------------------------------------------
def test_sliding_done_gives_each_frame_its_own_causal_window(wm, dataset):
    arrays = dataset.load_arrays()
    e = int(np.argmax(arrays.lengths))
    frames = arrays.frames[arrays.starts[e] : arrays.starts[e] + arrays.lengths[e]]
    actions = arrays.actions[arrays.starts[e] : arrays.starts[e] + arrays.lengths[e] - 1]
    done = sliding_done(wm, frames, actions)
    L = wm.cfg.context_length
    for t in [0, 1, L - 1, L, len(frames) - 1]:
        lo = max(0, t - L + 1)
        expected = wm.done_probability(frames[None, lo : t + 1], actions[None, lo:t])[0, -1]
        assert done[t] == pytest.approx(expected.item(), abs=1e-5)
