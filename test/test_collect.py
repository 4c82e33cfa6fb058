"""Done labels, scripted-expert episodes and a small collection run (real Meta-World, EGL)."""

import dataclasses

import numpy as np
import pytest

from roboscape_r_ros.commands.collect import run_collect
from roboscape_r_ros.config import ConfigError, from_dict
from roboscape_r_ros.data.collect import CollectConfig, episode_kinds, record_episode
from roboscape_r_ros.data.done_labels import DoneLabelError, done_labels, segment_done_curve
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.envs.metaworld_env import EnvConfig, make_env
from roboscape_r_ros.envs.scene import SceneDraws, SceneVariation, SceneVariationError

CAP = 80  # reach-v3's expert needs 32-59 steps


def test_segment_curve_follows_the_formula():
    n = 7
    expected = [np.exp(4 * (k / (n - 1) - 1)) for k in range(n)]
    np.testing.assert_allclose(segment_done_curve(n), expected, rtol=1e-6)
    assert segment_done_curve(n)[-1] == 1.0 and segment_done_curve(1).tolist() == [1.0]


def test_done_labels_of_a_success_rise_to_one_and_stay():
    done, subtask = done_labels(10, [5])
    np.testing.assert_allclose(done[:6], segment_done_curve(6))
    assert done[6:].tolist() == [1.0] * 4
    assert done.dtype == np.float32 and subtask.dtype == np.int64 and not subtask.any()


def test_done_labels_of_a_failure_are_zero():
    done, subtask = done_labels(8, [])
    assert not done.any() and not subtask.any() and done.shape == (8,)


def test_done_labels_per_subtask():
    done, subtask = done_labels(10, [3, 7], num_subtasks=2)
    np.testing.assert_allclose(done[:4], segment_done_curve(4))
    np.testing.assert_allclose(done[4:8], segment_done_curve(4))
    assert done[8:].tolist() == [1.0, 1.0] and subtask.tolist() == [0] * 4 + [1] * 6
    done, subtask = done_labels(10, [3], num_subtasks=2)  # second sub-task never finished
    assert not done[4:].any() and subtask.tolist() == [0] * 4 + [1] * 6


@pytest.mark.parametrize("ends", [[10], [-1], [5, 5]])
def test_done_labels_reject_ends_outside_or_unordered(ends):
    with pytest.raises(DoneLabelError, match="must increase strictly within 0..9"):
        done_labels(10, ends, num_subtasks=2)


@pytest.mark.parametrize("n", [1, 3, 10, 17])
def test_episode_kinds_follow_the_shares(n):
    cfg = CollectConfig(episodes_per_task=n, noisy_fraction=0.3, failed_fraction=0.2, random_fraction=0.1)
    kinds = episode_kinds(cfg, np.random.default_rng(0))
    assert len(kinds) == n and set(kinds) <= {"expert", "noisy", "failed", "random"}
    if n == 10:
        assert [kinds.count(k) for k in ("expert", "noisy", "failed", "random")] == [4, 3, 2, 1]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"failed_fraction": 1.5}, r"failed_fraction must lie in \[0, 1\], got 1.5"),
        ({"noisy_fraction": 0.6, "failed_fraction": 0.5}, "add up to 1.2, more than 1"),
        ({"steps_after_success": 0}, "steps_after_success must be >= 1, got 0"),
        ({"expert_action_noise": -0.1}, "expert_action_noise must be >= 0, got -0.1"),
        ({"action_hold_steps": 0}, "action_hold_steps must be >= 1"),
    ],
)
def test_bad_collect_config_raises(fields, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(CollectConfig, fields)


@pytest.fixture(scope="module")
def reach_setup():
    cfg = CollectConfig(env=EnvConfig(tasks=["reach-v3"], resolution=32, max_steps=CAP), steps_after_success=5)
    env = make_env("reach-v3", cfg.env)
    yield env, cfg, [11, 12, 13]
    env.close()


def test_expert_succeeds_on_reach_within_the_cap_with_done_labels(reach_setup):
    env, cfg, seeds = reach_setup
    episode = record_episode(env, "expert", cfg, seeds[0])
    length = len(episode.frames)
    assert episode.success and episode.kind == "expert" and length < CAP
    assert episode.frames.shape == (length, 32, 32, 3) and episode.frames.dtype == np.uint8
    assert episode.actions.shape == (length, 4) and episode.actions.dtype == np.float32
    assert np.abs(episode.actions).max() <= 1.0
    assert episode.states.shape == (length, 4) and episode.states.dtype == np.float32
    assert episode.instruction == "Move the gripper to the goal."
    first_success = length - cfg.steps_after_success  # the episode ends 5 steps after it
    np.testing.assert_allclose(episode.done[: first_success + 1], segment_done_curve(first_success + 1))
    assert episode.done[first_success:].tolist() == [1.0] * cfg.steps_after_success
    assert episode.subtask_index.dtype == np.int64 and not episode.subtask_index.any()
    # frame 0 is the reset observation, before the first action
    np.testing.assert_array_equal(episode.frames[0], env.reset(seed=seeds[0])[0]["image"])


def test_random_and_failed_episodes_mostly_fail_and_are_labelled_zero(reach_setup):
    env, cfg, seeds = reach_setup
    kinds_and_seeds = [("random", seeds[0]), ("random", seeds[1]), ("failed", seeds[0])]
    episodes = [record_episode(env, kind, cfg, seed) for kind, seed in kinds_and_seeds]
    assert sum(e.success for e in episodes) <= 1
    for episode in episodes:
        if not episode.success:
            assert len(episode.frames) == CAP and not episode.done.any()


def test_same_seed_same_episode(reach_setup):
    env, cfg, seeds = reach_setup
    first, again = (record_episode(env, "noisy", cfg, seeds[2]) for _ in range(2))
    np.testing.assert_array_equal(first.actions, again.actions)
    np.testing.assert_array_equal(first.frames, again.frames)


def test_held_random_actions_change_every_hold_steps_and_move_the_hand_further(reach_setup):
    env, cfg, seeds = reach_setup
    held = record_episode(env, "random", dataclasses.replace(cfg, action_hold_steps=4), seeds[1])
    fresh = record_episode(env, "random", cfg, seeds[1])
    steps = len(held.actions) // 4 * 4
    blocks = held.actions[:steps].reshape(-1, 4, 4)
    assert (blocks == blocks[:, :1]).all() and not (blocks[1:, 0] == blocks[:-1, 0]).all(-1).any()
    # the 4-step mean of held actions keeps their spread; fresh draws average out (std 0.58 vs 0.29)
    mean_std = lambda a: a[: len(a) // 4 * 4, :3].reshape(-1, 4, 3).mean(1).std()  # noqa: E731
    assert mean_std(held.actions) > 1.5 * mean_std(fresh.actions)


def test_run_collect_writes_a_dataset(tmp_path):
    cfg = CollectConfig(
        env=EnvConfig(tasks=["reach-v3"], resolution=32, max_steps=30),
        episodes_per_task=2,
        noisy_fraction=0.0,
        failed_fraction=0.0,
        random_fraction=0.5,
        output=str(tmp_path / "reach"),
    )
    summary = run_collect(cfg, progress=False)
    assert summary.episodes == 2 and summary.episodes_per_kind == {"expert": 1, "random": 1}
    assert summary.image_shape == (32, 32, 3) and summary.fps == 80
    assert (tmp_path / "reach" / "meta" / "info.json").is_file()


def test_scene_draws_give_each_episode_its_own_colours_and_light_away_from_avoided_ones(tmp_path):
    avoid = [(0.25, 0.35, 0.75), (0.9, 0.75, 0.1)]
    draws = SceneDraws(colour_share=1.0, light_scale=(0.75, 1.25), avoid_rgb=avoid, avoid_distance=0.3)
    rng = np.random.default_rng(0)
    scenes = [draws.draw(SceneVariation(), rng) for _ in range(200)]
    for scene in scenes:
        for rgb in (scene.table_rgba[:3], scene.object_rgba[:3], scene.background_rgb):
            assert np.linalg.norm(np.subtract(avoid, rgb), axis=1).min() >= 0.3
        assert 0.75 <= scene.light_scale <= 1.25
    none = SceneDraws(colour_share=0.0, light_scale=(0.75, 1.25)).draw(SceneVariation(), rng)
    assert none.table_rgba is None and none.object_rgba is None and none.background_rgb is None
    with pytest.raises(SceneVariationError, match="no colour"):
        SceneDraws(colour_share=1.0, avoid_rgb=[(0.5, 0.5, 0.5)], avoid_distance=2.0).draw(SceneVariation(), rng)

    def first_frames(output: str, scene_draws: SceneDraws) -> np.ndarray:
        cfg = CollectConfig(
            env=EnvConfig(tasks=["reach-v3"], resolution=32, max_steps=2),
            episodes_per_task=3,
            **dict.fromkeys(("noisy_fraction", "failed_fraction", "random_fraction"), 0.0),
            scene_draws=scene_draws,
            output=str(tmp_path / output),
        )
        run_collect(cfg, progress=False)
        dataset = EpisodeDataset.open(cfg.output)
        return np.stack([dataset.episode(e).frames[0] for e in range(3)]).astype(float)  # [3,H,W,3]

    plain = first_frames("plain", SceneDraws())
    drawn = first_frames("drawn", draws)
    mean_colour = lambda frames: frames.mean(axis=(1, 2))  # noqa: E731  [3,3]
    # the same table in every plain episode (only object positions differ); a new paint per drawn one
    assert np.abs(np.diff(mean_colour(plain), axis=0)).max() < 3
    assert np.abs(np.diff(mean_colour(drawn), axis=0)).max() > 10
