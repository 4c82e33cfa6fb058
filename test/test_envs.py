"""Pixel Meta-World env: frames, cameras, scene variations and their validation (real MuJoCo, EGL)."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from roboscape_r_ros.envs.metaworld_env import BlackFrameError, EnvConfig, UnknownCameraError, make_env
from roboscape_r_ros.envs.scene import SceneVariation, SceneVariationError, reset_bounds
from roboscape_r_ros.envs.tasks import KNOWN_TASKS, MT10_TASKS, UnknownTaskError, expert_policy, instruction

SEED = 3


@pytest.fixture(scope="module")
def reach():
    env = make_env("reach-v3", EnvConfig(resolution=64), seed=0)
    yield env
    env.close()


@pytest.fixture
def reach_scene(reach):
    """The reach env with its neutral-scene first frame; the scene is neutral again afterwards."""
    reach.set_scene(SceneVariation())
    neutral = reach.reset(seed=SEED)[0]["image"]
    yield reach, neutral
    reach.set_scene(SceneVariation())


@pytest.fixture(scope="module")
def pick_place():
    env = make_env("pick-place-v3", EnvConfig(resolution=32), seed=0)
    yield env
    env.close()


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_registry_covers_mt10_with_instructions_and_experts():
    assert len(MT10_TASKS) == 10 and set(MT10_TASKS) <= set(KNOWN_TASKS)
    assert len(KNOWN_TASKS) == 50
    assert instruction("push-v3") == "Push the puck to the goal."
    assert len({instruction(t) for t in KNOWN_TASKS}) == 50
    assert callable(expert_policy("reach-v3").get_action)


def test_unknown_task_raises_listing_known_tasks():
    with pytest.raises(UnknownTaskError, match=r"unknown task 'foo-v3' \(known: .*reach-v3"):
        make_env("foo-v3")
    with pytest.raises(UnknownTaskError, match="reach-v2"):
        EnvConfig(tasks=["reach-v2"])


def test_reset_and_step_return_upright_frames_state_and_info(reach):
    obs, info = reach.reset(seed=SEED)
    image = obs["image"]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert obs["state"].shape == (4,) and obs["state"].dtype == np.float32
    assert info["instruction"] == "Move the gripper to the goal." and info["success"] is False
    # upright: plain sky on top, the busy table and arm below
    assert image[:4].std() < 5 and image[-24:].std() > 20
    # turned, not mirrored: from corner2 the arm's base stands left of the table
    red = (image[..., 0] > 120) & (image[..., 1] < 60) & (image[..., 2] < 60)
    assert red.sum() > 20 and np.nonzero(red)[1].mean() < 32
    obs, reward, terminated, truncated, info = reach.step(np.array([1.0, 0.0, 0.0, -1.0], dtype=np.float32))
    assert obs["image"].std() > 20 and not terminated and not truncated
    assert isinstance(reward, float) and isinstance(info["success"], bool)
    assert obs["state"][0] > 0.004  # +x moved the hand


def test_same_seed_same_scene_other_seed_other_scene(reach):
    first = reach.reset(seed=SEED)[1]["metaworld_obs"]
    again = reach.reset(seed=SEED)[1]["metaworld_obs"]
    other = reach.reset(seed=SEED + 1)[1]["metaworld_obs"]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[36:39], other[36:39])


def test_bad_action_raises(reach):
    reach.reset(seed=SEED)
    with pytest.raises(ValueError, match="4 finite numbers"):
        reach.step(np.zeros(3))
    with pytest.raises(ValueError, match="4 finite numbers"):
        reach.step(np.array([np.nan, 0, 0, 0]))


def test_resolution_and_camera_are_honoured(reach):
    top = make_env("reach-v3", EnvConfig(resolution=48, camera="topview"))
    try:
        image = top.reset(seed=SEED)[0]["image"]
        assert image.shape == (48, 48, 3)
        corner2 = cv2.resize(reach.reset(seed=SEED)[0]["image"], (48, 48), interpolation=cv2.INTER_AREA)
        assert mean_abs_diff(image, corner2) > 20
    finally:
        top.close()
    with pytest.raises(UnknownCameraError, match=r"unknown camera 'nope' \(cameras: topview, corner"):
        make_env("reach-v3", EnvConfig(camera="nope"))


@pytest.mark.parametrize(
    "variation, min_diff",
    [
        (SceneVariation(table_rgba=(0.1, 0.4, 0.9, 1.0)), 4.0),  # measured 7.8 (grey levels, mean over pixels)
        (SceneVariation(background_rgb=(0.9, 0.2, 0.2)), 25.0),  # 54
        (SceneVariation(light_scale=0.2, headlight_ambient=(0.05,) * 3, headlight_diffuse=(0.1,) * 3), 30.0),  # 61
        (SceneVariation(camera_position_jitter=0.08, camera_rotation_jitter=4.0), 8.0),  # 17
        (SceneVariation(object_rgba=(0.0, 0.0, 1.0, 1.0)), 0.02),  # 0.058: the puck covers a few pixels
    ],
    ids=["table", "background", "lighting", "camera", "object"],
)
def test_scene_variations_change_pixels_and_are_undone(reach_scene, variation, min_diff):
    env, neutral = reach_scene
    env.set_scene(variation)
    varied = env.reset(seed=SEED)[0]["image"]
    assert mean_abs_diff(varied, neutral) > min_diff
    env.set_scene(SceneVariation())
    np.testing.assert_array_equal(env.reset(seed=SEED)[0]["image"], neutral)


def test_camera_jitter_is_drawn_per_episode_and_leaves_positions_alone(reach_scene):
    env, neutral = reach_scene
    positions = env.reset(seed=SEED)[1]["metaworld_obs"]
    env.set_scene(SceneVariation(camera_position_jitter=0.05))
    first_obs, first_info = env.reset(seed=SEED)
    second = env.reset()[0]["image"]
    assert mean_abs_diff(first_obs["image"], second) > 1.0
    np.testing.assert_array_equal(first_info["metaworld_obs"], positions)


def test_a_scene_applied_now_changes_the_next_frame_mid_episode_and_the_expert_still_succeeds(reach_scene):
    env, _ = reach_scene
    expert = expert_policy("reach-v3")
    obs, info = env.reset(seed=SEED)
    for _ in range(5):
        obs, _, _, _, info = env.step(expert.get_action(info["metaworld_obs"]))
    qpos, before = env.sim.data.qpos.copy(), env.render()
    env.set_scene(SceneVariation(table_rgba=(0.1, 0.4, 0.9, 1.0)), now=True)
    after = env.render()
    assert mean_abs_diff(after, before) > 4.0  # the table alone changed colour: measured 7.8 at reset
    np.testing.assert_array_equal(env.render(), after)
    assert env.steps == 5 and np.array_equal(env.sim.data.qpos, qpos)  # nothing moved
    success = False
    while not success and env.steps < 150:
        obs, _, _, _, info = env.step(expert.get_action(info["metaworld_obs"]))
        success = info["success"]
    assert success, "the expert failed after the mid-episode change"
    env.set_scene(SceneVariation(), now=True)
    neutral = env.render()
    env.set_scene(SceneVariation(light_scale=0.2, headlight_ambient=(0.05,) * 3), now=True)
    assert mean_abs_diff(env.render(), neutral) > 4.0
    env.set_scene(SceneVariation(), now=True)
    np.testing.assert_array_equal(env.render(), neutral)  # undone in place


def test_sim_session_refuses_a_scene_the_camera_cannot_see_and_keeps_the_old_one():
    from roboscape_r_ros.runtime.sessions.sim_session import SimSession, parse_scene

    session = SimSession("reach-v3", resolution=32, scene=parse_scene("{table_rgba: [0.1, 0.4, 0.9, 1]}"))
    try:
        session.reset()
        before = session.env.render()
        with pytest.raises(SceneVariationError, match="camera would see nothing") as err:
            session.change_scene(parse_scene("{camera_position_jitter: 10000, background_rgb: [0, 0, 0]}"))
        assert "\n" not in str(err.value)
        np.testing.assert_array_equal(session.env.render(), before)
    finally:
        session.close()


def test_a_single_colour_frame_raises_black_frame_error(reach_scene):
    env, _ = reach_scene
    env.set_scene(SceneVariation(camera_position_jitter=1e4, background_rgb=(0.0, 0.0, 0.0)))  # looks at black sky
    with pytest.raises(BlackFrameError, match="one colour"):
        env.reset(seed=SEED)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"table_rgba": (1.2, 0.0, 0.0, 1.0)}, r"table_rgba must be 4 numbers in \[0, 1\]"),
        ({"object_rgba": (1.0, 0.0, 0.0)}, "object_rgba must be 4 numbers"),
        ({"background_rgb": (0.5, float("nan"), 0.5)}, "background_rgb must be 3 numbers"),
        ({"headlight_diffuse": "white"}, "headlight_diffuse must be 3 numbers"),
        ({"light_scale": -1.0}, "light_scale must be a finite number >= 0, got -1.0"),
        ({"camera_rotation_jitter": float("inf")}, "camera_rotation_jitter must be a finite number"),
        ({"object_range": ((0.1, 0.6, 0.0), (0.0, 0.7, 0.0))}, r"object_range low .* exceeds high .* on x"),
        ({"goal_range": ((0.0, 0.8), (0.1, 0.9))}, r"goal_range must be \[\[x, y, z\] low"),
        ({"goal_range": ((0.0, 0.8, 0.1), (0.1, float("nan"), 0.2))}, "finite metres"),
    ],
)
def test_invalid_variations_raise_one_line_errors(fields, message):
    with pytest.raises(SceneVariationError, match=message) as err:
        SceneVariation(**fields)
    assert "\n" not in str(err.value)


def test_goal_range_is_refused_where_the_goal_follows_the_object():
    fixture_low, fixture_high = np.array([0.0, 0.85, 0.15]), np.array([0.1, 0.95, 0.15])  # door-open's vector
    variation = SceneVariation(goal_range=((0.0, 0.5, 0.1), (0.1, 0.6, 0.1)))
    with pytest.raises(SceneVariationError, match="goal_range cannot be set for door-open-v3"):
        reset_bounds(variation, fixture_low, fixture_high, "door-open-v3")
    pinned = SceneVariation(object_range=((0.0, 0.9, 0.15), (0.0, 0.9, 0.15)))
    low, high = reset_bounds(pinned, fixture_low, fixture_high, "door-open-v3")
    np.testing.assert_array_equal(low, high)


def test_object_and_goal_ranges_are_honoured(pick_place):
    object_xyz = (0.05, 0.62, 0.02)
    goal_low, goal_high = (-0.1, 0.85, 0.1), (-0.05, 0.9, 0.2)
    pick_place.set_scene(SceneVariation(object_range=(object_xyz, object_xyz), goal_range=(goal_low, goal_high)))
    try:
        for seed in range(3):
            sim_obs = pick_place.reset(seed=seed)[1]["metaworld_obs"]
            np.testing.assert_allclose(sim_obs[4:7], object_xyz, atol=2e-3)  # the puck settles on the table
            assert np.all(sim_obs[36:39] >= goal_low) and np.all(sim_obs[36:39] <= goal_high)
    finally:
        pick_place.set_scene(SceneVariation())


def test_object_too_close_to_goal_raises_instead_of_looping(pick_place):
    # pick-place re-draws while object and goal are < 0.15 m apart: a fixed close pair would loop forever
    pick_place.set_scene(SceneVariation(object_range=((0.0, 0.7, 0.02),) * 2, goal_range=((0.0, 0.8, 0.1),) * 2))
    try:
        with pytest.raises(SceneVariationError, match="pick-place-v3: 100 draws .* closer to the goal"):
            pick_place.reset(seed=SEED)
    finally:
        pick_place.set_scene(SceneVariation())
    assert pick_place.reset(seed=SEED)[0]["image"].std() > 10


def _without_display(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY")}
    return {**env, **extra}


def test_a_headless_machine_renders_without_mujoco_gl_exported():
    code = (
        "from roboscape_r_ros.envs.metaworld_env import EnvConfig, make_env; import os; "
        "env = make_env('reach-v3', EnvConfig(resolution=32), seed=0); "
        "print(os.environ['MUJOCO_GL'], env.reset(seed=0)[0]['image'].std() > 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=_without_display(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.split() == ["egl", "True"], result.stderr


@pytest.mark.slow
def test_a_gl_backend_that_cannot_start_ends_in_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "roboscape_r_ros.cli",
            "collect",
            "--preset",
            "tiny",
            f"output={tmp_path / 'd'}",
            "episodes_per_task=1",
        ],
        env=_without_display(MUJOCO_GL="glfw"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert last.startswith("roboscape-r collect: error: MuJoCo cannot render offscreen with MUJOCO_GL=glfw"), last
    assert "MUJOCO_GL=egl" in last and not (tmp_path / "d").exists(), last
