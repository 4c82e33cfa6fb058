"""`roboscape-r demo --preset tiny`: the whole pipeline as a user runs it, then a resume and bad input.

The tiny preset proves the plumbing (every stage runs, in one run folder, with the baseline's budget
tied to imagination's), not the method: its models are far too small to succeed at anything.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.cli_runner import assert_one_line_error, cli
from roboscape_r_ros.commands.demo import DemoConfig, baseline_steps, build_stages, stage_configs, wall_time_decisions
from roboscape_r_ros.commands.train_policy import PolicyTrainResult
from roboscape_r_ros.config import ConfigError, load_config
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.rl.evaluate import load_evaluation

# Each test here runs on a model or a run trained for the module (seconds to a minute on 2 cores).
pytestmark = pytest.mark.slow

STAGES = [
    "collect",
    "train-wm",
    "evaluate-wm",
    "reward-sanity",
    "train-bc",
    "train-imagination",
    "train-sim-ppo",
    "train-imagination-wall",
    "evaluate",
]


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "run"
    result = cli("demo", "--preset", "tiny", f"output={out}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout + result.stderr


def test_every_stage_runs_in_order_with_progress_and_a_summary(demo_run):
    out, log = demo_run
    heads = [f"[{i}/{len(STAGES)}] {name}:" for i, name in enumerate(STAGES, 1)]
    positions = [log.index(head) for head in heads]
    assert positions == sorted(positions)
    assert list(json.loads((out / "stages.json").read_text())) == STAGES
    assert "roboscape-r demo finished" in log and f"report: {out / 'REPORT.md'}" in log
    for path in (
        "dataset/meta/info.json",
        "world_model/world_model.safetensors",
        "reward_sanity/report.md",
        "policies/bc/bc.safetensors",
        "policies/imagination/imagination.safetensors",
        "policies/sim_ppo/policy.safetensors",
        "policies/imagination_wall/imagination.safetensors",
        "evaluation/report.md",
        "config.yaml",
        "world_model_eval/metrics.json",
        "world_model_eval/report.md",
        "world_model_eval/controllability.png",
    ):
        assert (out / path).is_file(), path


def test_the_baseline_gets_the_environment_steps_imagination_had(demo_run):
    out, _ = demo_run
    imagined = json.loads((out / "policies/imagination/imagination.json").read_text())["imagined_steps"]
    sim = json.loads((out / "policies/sim_ppo/ppo.json").read_text())
    assert imagined["control_steps"] == imagined["world_model_steps"] * 2  # the tiny preset's frame_skip
    assert sim["config"]["ppo"]["total_steps"] == imagined["control_steps"]
    assert sim["final"]["decisions"] >= imagined["control_steps"]


def test_the_second_imagination_policy_gets_sim_ppos_wall_time(demo_run):
    out, _ = demo_run
    imagination = PolicyTrainResult.load(out / "policies/imagination", "imagination")
    sim = PolicyTrainResult.load(out / "policies/sim_ppo", "ppo")
    wall = json.loads((out / "policies/imagination_wall/imagination.json").read_text())
    assert wall["config"]["ppo"]["total_steps"] == wall_time_decisions(imagination, sim.wall_s)
    assert wall["init"] == str(out / "policies/bc/bc.safetensors")  # the same BC start as the others


def test_wall_time_decisions_follow_the_measured_rate():
    imagined = PolicyTrainResult(Path("p"), wall_s=10.0, final={}, imagined_steps={"decisions": 400})
    assert wall_time_decisions(imagined, 30.0) == 1200
    assert wall_time_decisions(imagined, 0.0) == 1


def test_the_report_compares_every_policy_on_the_same_episodes(demo_run):
    out, _ = demo_run
    episodes = json.loads((out / "evaluation/report.json").read_text())["episodes"]
    actors = {"imagination-ppo", "imagination-ppo-wall", "bc", "sim-ppo", "random"}
    assert {e["actor"] for e in episodes} == actors
    for scene in ("in-domain", "lighting"):
        seeds = [sorted(e["reset_seed"] for e in episodes if e["actor"] == a and e["scene"] == scene) for a in actors]
        assert seeds[0] and all(s == seeds[0] for s in seeds)
    calibration = json.loads((out / "policies/imagination/imagination.json").read_text())["imagined_success"]
    assert calibration["init"]["episodes"] >= 16 and calibration["trained"]["episodes"] >= 16
    report = (out / "REPORT.md").read_text()
    assert f"| bc | {100 * calibration['init']['success']:.0f}% (n=" in report
    assert f"| imagination-ppo | {100 * calibration['trained']['success']:.0f}% (n=" in report
    for fragment in (
        "## Stages",
        "## Training budgets",
        "## Success in the physics sim",
        "| imagination-ppo |",
        "| sim-ppo |",
        "| imagination-ppo-wall | the world model, endogenous reward (BC init, for sim-PPO's wall time) |",
        "### Relative improvement of imagination-ppo\n",
        "### Relative improvement of imagination-ppo-wall\n",
        "## Reward sanity on held-out episodes",
        "rho(r, t)",
        "## World model on held-out episodes",
        "[world_model_eval/report.md](world_model_eval/report.md)",
        "![controllability](world_model_eval/controllability.png)",
        "## Imagined vs real success (calibration)",
        "| policy | imagined | real, in domain | gap | per task: imagined / real |",
    ):
        assert fragment in report, fragment


def test_the_world_model_is_evaluated_on_its_held_out_episodes_and_the_report_gives_its_figures(demo_run):
    out, log = demo_run
    metrics = json.loads((out / "world_model_eval/metrics.json").read_text())
    split = json.loads((out / "world_model/split.json").read_text())
    assert metrics["run"] == str(out / "world_model") and metrics["held_out_episodes"] == len(split["held_out"])
    h8 = metrics["open_loop"]["horizons"]["8"]  # the tiny preset's horizons: 1, 4, 8
    fired = metrics["done_head"]["successful_episodes_fired_near_end_by_task"]
    divergence = metrics["controllability"]["mean_pairwise_divergence"]
    report = (out / "REPORT.md").read_text()
    for line in (
        f"| 8-step open-loop PSNR gain over copy-last-frame | {h8['psnr_gain']:+.2f} dB "
        f"({h8['psnr']:.2f} vs {h8['psnr_copy_last']:.2f} dB) |",
        f"| 8-step action controllability dPSNR (true - shuffled actions) | {h8['dpsnr']:+.2f} dB |",
        f"| controllability sheet: mean divergence between held actions' final frames | {divergence:.2f}/255 |",
    ):
        assert line in report, line
    done_row = re.search(r"\| successes on which the done head fires near the end [^|]*\| (.*) \|", report).group(1)
    if fired:  # tiny's few held-out episodes may hold no success
        assert list(fired) == ["reach-v3"] and done_row.startswith("reach-v3 ") and "/" in done_row
    else:
        assert done_row == "no successful held-out episode"
    assert re.search(r"\[3/\d+\] evaluate-wm: 8-step gain [+-]\d+\.\d\d dB, dPSNR [+-]\d+\.\d\d dB; done fires", log)


def test_with_an_existing_world_model_the_stage_evaluates_that_run(demo_run, tmp_path):
    out, _ = demo_run
    overrides = [f"output={tmp_path / 'run'}", f"world_model_run={out / 'world_model'}"]
    cfg = load_config(DemoConfig, "demo", "tiny", overrides)
    configs = stage_configs(cfg)
    stages = {stage.name: stage for stage in build_stages(cfg, configs)}
    assert "train-wm" not in stages and "collect" not in stages
    result = stages["evaluate-wm"].run()
    metrics = json.loads((tmp_path / "run/world_model_eval/metrics.json").read_text())
    assert metrics["run"] == str(out / "world_model") and metrics["dataset"] == str(out / "dataset")
    assert result.startswith("8-step gain ") and "/255" in result


def test_a_rerun_resumes_and_a_changed_setting_is_refused(demo_run):
    out, _ = demo_run
    again = cli("demo", "--preset", "tiny", f"output={out}", timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.count("done in an earlier run") == len(STAGES)
    changed = cli("demo", "--preset", "tiny", f"output={out}", "collect.episodes_per_task=3")
    assert_one_line_error(changed, "collect.episodes_per_task=10", "now 3")


def test_frame_sizes_must_agree_across_stages():
    with pytest.raises(ConfigError, match="frame sizes disagree"):
        load_config(DemoConfig, "demo", "tiny", ["policy.policy.image_size=64"])


def test_baseline_budget_counts_control_steps_or_decisions():
    cfg = load_config(DemoConfig, "demo", "tiny", [])
    imagined = {"decisions": 100, "world_model_steps": 100, "control_steps": 400}
    assert baseline_steps(cfg, imagined) == 400
    cfg.baseline_budget = "decisions"
    assert baseline_steps(cfg, imagined) == 100
    cfg.baseline_budget, cfg.policy.policy.chunk = "control_steps", 4
    assert baseline_steps(cfg, imagined) == 100  # 100 decisions of 4 actions each


def test_the_demo_world_model_trains_on_the_headline_recipe():
    """docs/results/world_model_cpu.md: held actions and weighted changing tokens made the model follow its actions."""
    cfg = load_config(DemoConfig, "demo", "demo", [])
    assert cfg.collect.action_hold_steps == cfg.world_model.model.frame_skip == 4
    assert cfg.world_model.model.dynamics.changed_token_weight == 4.0


def test_the_lab_loop_refits_the_world_model_on_the_policys_episodes_and_pairs_its_evaluation(demo_run):
    out, _ = demo_run
    loop = out.parent / "lab_loop"
    args = ["lab-loop", f"run={out}", f"output={loop}", "rounds=1", "episodes_per_task=2", "finetune_steps=4"]
    result = cli(*args, "ppo_steps=32", "workers=1", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    base = EpisodeDataset.open(out / "dataset")
    data = EpisodeDataset.open(loop / "round_1/dataset")
    assert data.num_episodes == base.num_episodes + 2 and [e.kind for e in data.episodes[-2:]] == ["policy"] * 2
    # the fine-tune started from the demo's world model and kept its held-out split
    split = json.loads((loop / "round_1/world_model/split.json").read_text())
    assert split["parent"]["num_episodes"] == base.num_episodes
    assert set(json.loads((out / "world_model/split.json").read_text())["held_out"]) <= set(split["held_out"])
    summary = json.loads((loop / "round_1/policy/imagination.json").read_text())
    assert summary["init"] == str(out / "policies/imagination/imagination.safetensors")
    assert summary["world_model"] == str(loop / "round_1/world_model/world_model.safetensors")
    # the round's policy met the demo's evaluation episodes: same identities, same reset seeds
    demo_eval = load_evaluation(out / "evaluation/report.json").episodes
    round_eval = load_evaluation(loop / "round_1/evaluation/report.json").episodes
    key = lambda r: (r.task, r.scene, r.seed, r.episode, r.reset_seed)  # noqa: E731
    assert {key(r) for r in round_eval} == {key(r) for r in demo_eval if r.actor == "bc"}
    report = (loop / "LAB_LOOP.md").read_text()
    for fragment in ("| lab-round-1 |", "### Relative improvement of lab-round-1", "| imagination-ppo |", "gap"):
        assert fragment in report, fragment
    again = cli(*args, "ppo_steps=32", "workers=1", timeout=300)
    assert again.returncode == 0 and again.stderr.count("done in an earlier run") == 4
    assert_one_line_error(cli(*args, "ppo_steps=64"), "ppo_steps")


def test_an_ablation_retrains_what_its_overrides_touch_and_is_paired_with_the_demo(demo_run):
    out, _ = demo_run
    variant = "no-shift: policy.bc.shift=0 policy.bc.steps=20 policy.ppo.total_steps=32"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench/ablate_imagination.py"), str(out), variant, "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folder = out / "ablations/no-shift"
    assert json.loads((folder / "bc/bc.json").read_text())["config"]["bc"]["steps"] == 20
    assert json.loads((folder / "policy/imagination.json").read_text())["init"] == str(folder / "bc/bc.safetensors")
    ablation = load_evaluation(folder / "evaluation/report.json").episodes
    assert {r.actor for r in ablation} == {"no-shift/bc", "no-shift", "no-shift/sim-ppo"}
    assert json.loads((folder / "sim_ppo/ppo.json").read_text())["config"]["init"] == str(folder / "bc/bc.safetensors")
    demo_keys = {
        (r.task, r.scene, r.seed, r.episode, r.reset_seed)
        for r in load_evaluation(out / "evaluation/report.json").episodes
    }
    assert {(r.task, r.scene, r.seed, r.episode, r.reset_seed) for r in ablation} == demo_keys
    report = (out / "ablations/ablations.md").read_text()
    assert "### Relative improvement of no-shift\n" in report and "| no-shift |" in report


def test_bc_dataset_gives_every_compared_policy_the_same_other_demos(tmp_path):
    """The pipeline owns policy.bc.dataset: a user's policy.bc.dataset is replaced by the run's, and
    bc_dataset is the way to give BC (the start of bc, imagination-PPO and sim-PPO) other demos."""
    demos = str(tmp_path / "demos")
    ignored = stage_configs(
        load_config(DemoConfig, "demo", "tiny", [f"output={tmp_path}", f"policy.bc.dataset={demos}"])
    )
    assert ignored["bc"].bc.dataset == str(tmp_path / "dataset")
    configs = stage_configs(load_config(DemoConfig, "demo", "tiny", [f"output={tmp_path}", f"bc_dataset={demos}"]))
    assert {configs[stage].bc.dataset for stage in ("bc", "imagination", "sim_ppo")} == {demos}
    assert configs["imagination"].imagination.dataset == str(tmp_path / "dataset")  # the world model's own
