"""The demo's REPORT.md and its printed summary (`roboscape-r demo`, commands/demo.py), from what its
stages left in the run folder: stages.json, each policy's training summary, evaluate-wm's
metrics.json, the evaluation's report.json and reward-sanity's report.md. Reading them is all it does:
a finished run's report can be written again without running anything."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from roboscape_r_ros.commands.train_policy import PolicyTrainResult
from roboscape_r_ros.files import write_atomic
from roboscape_r_ros.markdown import MISSING, duration, measured, number, percent, table
from roboscape_r_ros.rl.evaluate import load_evaluation
from roboscape_r_ros.rl.report import calibration_table, scene_table, success_tables
from roboscape_r_ros.runs import RunError, RunFolder
from roboscape_r_ros.world_model.rollout import SHEET_PNG

if TYPE_CHECKING:
    from roboscape_r_ros.commands.demo import DemoConfig, StageConfigs

REPORT_FILE, WM_EVAL_DIR = "REPORT.md", "world_model_eval"
OURS, OURS_WALL = "imagination-ppo", "imagination-ppo-wall"  # the evaluation's names of the imagination policies

ImaginationStage = Literal["imagination", "imagination_wall"]


def imagined_steps(result: PolicyTrainResult) -> dict[str, int]:
    """A train-imagination result's decisions, world-model steps and control steps."""
    if result.imagined_steps is None:
        raise RunError(f"{result.checkpoint}: no imagined steps beside it (not a train-imagination policy)")
    return result.imagined_steps


def imagination_stages(cfg: DemoConfig) -> list[tuple[str, ImaginationStage]]:
    """The evaluated name and the stage of each imagination policy of the run."""
    stages: list[tuple[str, ImaginationStage]] = [(OURS, "imagination")]
    return stages + ([(OURS_WALL, "imagination_wall")] if cfg.equal_wall_time else [])


def write_report(cfg: DemoConfig, configs: StageConfigs, done: dict[str, dict[str, Any]]) -> Path:
    """REPORT.md in the run folder: stages, budgets, success in the sim, calibration, the world model and the
    reward's sanity."""
    out = Path(cfg.output)
    total = sum(s["wall_s"] for s in done.values())
    lines = [
        "# roboscape-r demo report",
        "",
        f"Run folder `{out}`; {platform.node()}: {os.cpu_count()} CPU cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, device {configs['bc'].device}. Tasks: "
        f"{', '.join(cfg.collect.env.tasks)} at {cfg.collect.env.resolution}x{cfg.collect.env.resolution} "
        f"(camera {cfg.collect.env.camera}). Total stage time **{duration(total)}**.",
        "",
        "## Stages",
        "",
        *table(
            ["stage", "wall time", "result"], [[name, duration(s["wall_s"]), s["result"]] for name, s in done.items()]
        ),
        "",
        "## Training budgets",
        "",
        *budget_table(cfg, configs),
        "",
        "One world-model step stands for frame_skip control steps (the action held, as the sim would repeat it); "
        "the sim baseline gets the same environment steps "
        f"({cfg.baseline_budget.replace('_', ' ')})"
        + (
            f"; {OURS_WALL} gets sim-PPO's wall time at imagination's measured decision rate."
            if cfg.equal_wall_time
            else "."
        ),
        "",
        "## Success in the physics sim",
        "",
        "Absolute rates with 95% Wilson intervals come first: a relative gain over a baseline near 0% says "
        "nothing. Imagined returns are training signals only; every policy is judged here, by Meta-World's "
        "success flag.",
        "",
        *success_section(configs),
        "",
        "![success per scene](evaluation/report_success.png)",
        "",
        "Full evaluation, with a GIF of each scene: [evaluation/report.md](evaluation/report.md).",
        "",
        *calibration_section(cfg, configs),
        *world_model_section(configs),
    ]
    sanity = Path(configs["reward_sanity"].output) / "report.md"
    if cfg.reward_sanity and sanity.exists():
        body = sanity.read_text().split("\n", 1)[1]  # without its title
        lines += ["## Reward sanity on held-out episodes", body]
    path = out / REPORT_FILE
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def budget_table(cfg: DemoConfig, configs: StageConfigs) -> list[str]:
    """Environment steps and wall time of each policy's training."""
    sim = PolicyTrainResult.load(configs["sim_ppo"].output, "ppo")
    bc = PolicyTrainResult.load(configs["bc"].output, "bc")
    chunk = configs["sim_ppo"].policy.chunk
    sim_decisions = int(sim.final.get("decisions", configs["sim_ppo"].ppo.total_steps))
    bc_data = configs["bc"].bc
    rows: list[list[object]] = [
        [
            "bc",
            f"{bc_data.steps} gradient steps on the successful episodes of {bc_data.dataset}",
            0,
            0,
            duration(bc.wall_s),
        ]
    ]
    for name, stage in imagination_stages(cfg):
        budget = ", for sim-PPO's wall time" if stage == "imagination_wall" else ""
        imag = PolicyTrainResult.load(configs[stage].output, "imagination")
        steps = imagined_steps(imag)
        rows.append(
            [
                name,
                f"the world model, endogenous reward (BC init{budget})",
                f"{steps['world_model_steps']} world-model steps = {steps['control_steps']} control steps",
                steps["decisions"],
                duration(imag.wall_s),
            ]
        )
    rows.append(
        [
            "sim-ppo",
            "Meta-World physics, hand-written dense reward (BC init)",
            f"{sim_decisions * chunk} control steps",
            sim_decisions,
            duration(sim.wall_s),
        ]
    )
    return table(["policy", "trained in", "environment steps", "decisions", "wall time"], rows)


def success_section(configs: StageConfigs) -> list[str]:
    """The evaluation's success tables, with the relative improvement of each imagination policy."""
    evaluate = configs["evaluate"]
    evaluation = load_evaluation(Path(evaluate.report).with_suffix(".json"))
    return success_tables(evaluation.episodes, evaluation.scenes, evaluate.ours, evaluate.min_baseline)


def calibration_section(cfg: DemoConfig, configs: StageConfigs) -> list[str]:
    """Imagined vs real success of the BC start and of every imagination policy (the model's optimism)."""
    evaluation = load_evaluation(Path(configs["evaluate"].report).with_suffix(".json"))
    imagined: dict[str, dict[str, Any]] = {}
    steps = 0
    for name, stage in imagination_stages(cfg):
        rates = RunFolder.open(configs[stage].output, create=False).read_json("imagination.json")["imagined_success"]
        if rates:
            imagined.setdefault("bc", rates["init"])
            imagined[name], steps = rates["trained"], rates["world_model_steps"]
    if not imagined:
        return []
    return [
        "## Imagined vs real success (calibration)",
        "",
        f"Imagined: the done head fired within {steps} world-model steps (a sim episode's length), from the "
        "first frames of the world model's held-out episodes, with each policy's mean action. Real: Meta-World's "
        "success flag in the training scene (above). A large positive gap means the world model pays the policy "
        "for what the task does not.",
        "",
        *calibration_table(imagined, evaluation.episodes),
        "",
    ]


def wm_metrics(configs: StageConfigs) -> dict[str, Any]:
    """The evaluate-wm stage's metrics.json."""
    metrics: dict[str, Any] = json.loads((Path(configs["evaluate_wm"].output) / "metrics.json").read_text())
    return metrics


def world_model_figures(metrics: dict[str, Any]) -> dict[str, str]:
    """The demo's world-model figures from evaluate-wm's metrics.json, as text (n/a where not measured)."""
    horizons = metrics["open_loop"]["horizons"]  # keyed by str(h); NaN is null
    h = "8" if "8" in horizons else max(horizons, key=int, default=MISSING)
    row = horizons.get(h, {})
    by_task = metrics["done_head"].get("successful_episodes_fired_near_end_by_task", {})
    return {
        "horizon": h,
        "gain": number(row.get("psnr_gain"), sign=True, unit=" dB"),
        "copy": f"{number(row['psnr'])} vs {number(row['psnr_copy_last'])} dB"
        if measured(row.get("psnr_gain"))
        else MISSING,
        "dpsnr": number(row.get("dpsnr"), sign=True, unit=" dB"),
        "done_fired": ", ".join(
            f"{task} {round(t['fired'] * t['episodes'])}/{t['episodes']} ({percent(t['fired'])})"
            for task, t in by_task.items()
        )
        or "no successful held-out episode",
        "divergence": number(metrics["controllability"].get("mean_pairwise_divergence"), unit="/255"),
    }


def world_model_section(configs: StageConfigs) -> list[str]:
    """REPORT.md's section on the world model: the headline of the evaluate-wm stage and its sheet."""
    metrics = wm_metrics(configs)
    f = world_model_figures(metrics)
    rows = [
        [f"{f['horizon']}-step open-loop PSNR gain over copy-last-frame", f"{f['gain']} ({f['copy']})"],
        [f"{f['horizon']}-step action controllability dPSNR (true - shuffled actions)", f["dpsnr"]],
        [
            "successes on which the done head fires near the end (p >= threshold on a done-labelled frame)",
            f["done_fired"],
        ],
        ["controllability sheet: mean divergence between held actions' final frames", f["divergence"]],
    ]
    lines = [
        "## World model on held-out episodes",
        "",
        f"evaluate-wm on {metrics['episodes_scored']}; full report: "
        f"[{WM_EVAL_DIR}/report.md]({WM_EVAL_DIR}/report.md).",
        "",
        *table(["measure", "value"], rows),
        "",
    ]
    sheet = metrics["controllability"]
    if sheet["contexts"]:
        lines += [
            f"![controllability]({WM_EVAL_DIR}/{SHEET_PNG})",
            "",
            f"Held-out contexts dreamed {sheet['steps']} steps ({sheet['control_steps']} control steps) under each "
            "held action (rows); the divergence is the mean absolute per-pixel difference of their final frames "
            "(0: the world model ignores its actions).",
            "",
        ]
    return lines


def summary(done: dict[str, dict[str, Any]], report: Path, configs: StageConfigs) -> str:
    """What `roboscape-r demo` prints at the end: each stage's time and result, and success per scene."""
    evaluation = load_evaluation(Path(configs["evaluate"].report).with_suffix(".json"))
    total = sum(s["wall_s"] for s in done.values())
    lines = ["", "roboscape-r demo finished", ""]
    lines += [f"  {name:<22} {duration(s['wall_s']):>9}  {s['result']}" for name, s in done.items()]
    lines += [
        f"  {'total':<22} {duration(total):>9}",
        "",
        *scene_table(evaluation.episodes, evaluation.scenes),
        "",
        f"report: {report}",
    ]
    return "\n".join(lines)
