"""Evaluation in the physics sim: statistics, expert-checked out-of-domain positions, actors, the report."""

import dataclasses

import numpy as np
import pytest

from roboscape_r_ros.config import ConfigError, load_config
from roboscape_r_ros.envs.metaworld_env import EnvConfig
from roboscape_r_ros.envs.scene import SceneVariation
from roboscape_r_ros.rl.actors import ExpertActor, RandomActor
from roboscape_r_ros.rl.evaluate import EvaluateConfig, SceneSpec, evaluate, outside_scene, run_evaluate
from roboscape_r_ros.rl.policy import ImagePolicy, PolicyConfig, PolicyMismatchError
from roboscape_r_ros.rl.report import (
    IN_DOMAIN,
    EpisodeResult,
    mean_relative_improvement,
    relative_improvement,
    success_tables,
    wilson_interval,
)

REACH = EnvConfig(tasks=["reach-v3"], resolution=32, max_steps=80)  # the expert needs 32-59 steps


def test_wilson_interval_known_values():
    np.testing.assert_allclose(wilson_interval(0, 10), (0.0, 0.2775), atol=1e-4)
    np.testing.assert_allclose(wilson_interval(5, 10), (0.2366, 0.7634), atol=1e-4)
    np.testing.assert_allclose(wilson_interval(10, 10), (0.7225, 1.0), atol=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_relative_improvement_as_the_paper_reports_it():
    assert relative_improvement(0.55, 0.40) == pytest.approx(0.375)  # "+37.5%"
    assert relative_improvement(0.5, 0.0) is None and relative_improvement(0.5, 0.04) is None
    mean, per = mean_relative_improvement(0.6, {"bc": 0.4, "sim-ppo": 0.5, "random": 0.0})
    assert per == {"bc": pytest.approx(0.5), "sim-ppo": pytest.approx(0.2), "random": None}
    assert mean == pytest.approx(0.35)


def test_success_tables_pool_and_compare():
    def results(actor, successes):
        return [EpisodeResult(actor, "reach-v3", scene, 0, i, i, bool(s), 10)
                for scene in (IN_DOMAIN, "lighting") for i, s in enumerate(successes)]  # fmt: skip

    lines = "\n".join(success_tables(results("ours", [1, 1, 1, 0]) + results("bc", [1, 1, 0, 0]), ours="ours"))
    assert "| ours | 75% [30, 95] n=4 | 75% [30, 95] n=4 | 75% [30, 95] n=4 |" in lines
    assert "| bc | +25.0 pts | +50.0% | +50.0% |" in lines
    assert "(the paper's measure): **+50.0%**" in lines


def test_outside_scene_adjoins_the_training_range():
    low, high = np.array([-0.1, 0.6, 0.02, -0.1, 0.8, 0.05]), np.array([0.1, 0.7, 0.02, 0.1, 0.9, 0.3])
    scene = outside_scene(SceneSpec("p", SceneVariation(light_scale=0.5), outside="x+", outside_depth=0.1), low, high)
    np.testing.assert_allclose(scene.object_range, [[0.1, 0.6, 0.02], [0.2, 0.7, 0.02]])
    np.testing.assert_allclose(scene.goal_range, [[0.1, 0.8, 0.05], [0.2, 0.9, 0.3]])
    assert scene.light_scale == 0.5
    fixture = outside_scene(SceneSpec("p", outside="y-", outside_depth=0.1), low[:3], high[:3])
    np.testing.assert_allclose(fixture.object_range, [[-0.1, 0.5, 0.02], [0.1, 0.6, 0.02]])
    assert fixture.goal_range is None


def test_scripted_expert_succeeds_and_random_actions_fail_on_reach():
    scenes = [SceneSpec(IN_DOMAIN), SceneSpec("positions-y+", outside="y+")]
    actors = {"expert": ExpertActor(), "random": RandomActor(seed=0)}
    evaluation = evaluate(actors, REACH, scenes, seeds=[0], episodes_per_seed=3, progress=False)
    by = lambda actor, scene: [r for r in evaluation.episodes if r.actor == actor and r.scene == scene]  # noqa: E731
    for scene in (IN_DOMAIN, "positions-y+"):
        expert, random = by("expert", scene), by("random", scene)
        assert len(expert) == len(random) == 3  # a failed expert check draws another seed
        assert [r.reset_seed for r in expert] == [r.reset_seed for r in random]  # paired episodes
        assert sum(r.success for r in expert) >= 3 * 0.8
        assert sum(r.success for r in random) <= 1
    assert evaluation.scenes == [IN_DOMAIN, "positions-y+"]
    assert evaluation.dropped[f"reach-v3 / {IN_DOMAIN}"] == 0  # the expert solves reach in-domain


def test_run_evaluate_writes_a_report_for_a_policy(tmp_path):
    path = ImagePolicy(PolicyConfig(image_size=32, channels=[8, 8], hidden=16)).save(tmp_path / "p.safetensors")
    overrides = [f"policies=[tiny={path}]", "ours=tiny", "env.tasks=[reach-v3]", "env.resolution=32",
                 "env.max_steps=60", "seeds=[0]", "episodes_per_seed=1",
                 "ood_scenes=[{name: dark, scene: {light_scale: 0.3}}]", f"report={tmp_path / 'report.md'}"]  # fmt: skip
    cfg = load_config(EvaluateConfig, "evaluate", None, overrides)
    summary = run_evaluate(cfg, progress=False)
    report = (tmp_path / "report.md").read_text()
    assert "| tiny |" in summary and "| random |" in summary and "dark" in summary
    assert "### Relative improvement of tiny" in report and "light_scale" in report
    from PIL import Image

    assert Image.open(tmp_path / "report_success.png").size[1] == 360 and "(report_success.png)" in report
    for scene in (IN_DOMAIN, "dark"):  # the goal beside each actor's first episode, as long as the longest run
        gif = Image.open(tmp_path / f"report_{scene}.gif")
        assert gif.n_frames > 60 // 3 and f"(report_{scene}.gif)" in report
    wrong = ImagePolicy(PolicyConfig(image_size=32, action_dim=2, channels=[8, 8], hidden=16))
    wrong = wrong.save(tmp_path / "w.safetensors")
    with pytest.raises(PolicyMismatchError, match="emits 2-D actions, expected 4-D"):
        run_evaluate(dataclasses.replace(cfg, policies=[f"wrong={wrong}"]), progress=False)
    with pytest.raises(ConfigError, match="is not name=path"):
        EvaluateConfig(policies=["no-name"])
