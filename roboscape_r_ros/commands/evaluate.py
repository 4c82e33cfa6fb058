"""`roboscape-r evaluate`: success in the physics sim, in-domain and out-of-domain, for several actors on
the same episodes; a markdown report with a plot and GIFs, and every episode as JSON beside it.

    roboscape-r evaluate policies=bc=outputs/policies/bc.safetensors report=outputs/eval/report.md

How episodes are drawn, paired and run: rl/evaluate.py.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from roboscape_r_ros.envs.scene import SceneVariation
from roboscape_r_ros.files import write_atomic
from roboscape_r_ros.rl.evaluate import EvaluateConfig, Evaluation, evaluate
from roboscape_r_ros.rl.report import rate, scene_table, success_tables
from roboscape_r_ros.world_model.media import labelled_grid, line_plot, write_gif


def write_media(evaluation: Evaluation, report: Path) -> list[str]:
    """Success-per-scene plot and one GIF per scene beside ``report``; markdown lines that show them."""
    actors = list(dict.fromkeys(r.actor for r in evaluation.episodes))
    series, errors = {}, {}
    for k, actor in enumerate(actors):
        rates = [rate(r for r in evaluation.episodes if r.actor == actor and r.scene == s) for s in evaluation.scenes]
        xs = [i + 0.08 * (k - (len(actors) - 1) / 2) for i in range(len(rates))]
        series[actor] = (xs, [100 * r.value for r in rates])
        errors[actor] = ([100 * r.low for r in rates], [100 * r.high for r in rates])
    plot = report.with_name(f"{report.stem}_success.png")
    width = max(560, 110 * len(evaluation.scenes))
    line_plot(
        plot,
        series,
        "success in the physics sim (95% Wilson interval)",
        "scene",
        "success %",
        size=(width, 360),
        errors=errors,
        categories=evaluation.scenes,
    )
    lines = [f"![success per scene]({plot.name})", ""]
    for scene, tasks in evaluation.clips.items():
        if not tasks:
            continue
        gif = report.with_name(f"{report.stem}_{scene}.gif")
        rows = [[clip["goal"], *(clip[a] for a in actors)] for clip in tasks.values()]
        write_gif(gif, labelled_grid(rows, ["goal", *actors]), fps=8.0)
        lines.append(f"![{scene}: {', '.join(tasks)} (rows); goal, then each actor]({gif.name})")
    return lines


def markdown_report(evaluation: Evaluation, cfg: EvaluateConfig, media: list[str]) -> str:
    lines = [
        "# Evaluation in the physics sim",
        "",
        f"Tasks: {', '.join(cfg.env.tasks)}; {cfg.env.resolution}px frames from camera {cfg.env.camera}; step cap "
        f"{cfg.env.max_steps}; seeds {cfg.seeds}, {cfg.episodes_per_seed} episodes per task, scene and seed; goal "
        f"frames: {cfg.goal}; wall time {evaluation.wall_s:.0f} s. Success = Meta-World's success flag within the "
        "step cap. Every actor ran the same episodes; episodes the scripted expert could not solve were dropped.",
        "",
        *success_tables(evaluation.episodes, evaluation.scenes, cfg.ours, cfg.min_baseline),
        "",
        "### Episodes",
        "",
        "Each scene's first episode per task (rows), every actor from the same reset seed.",
        "",
        *media,
        "",
        "### Out-of-domain scenes",
        "",
    ]
    for spec in cfg.ood_scenes:
        changed = {k: v for k, v in dataclasses.asdict(spec.scene).items() if v != getattr(SceneVariation(), k)}
        if spec.outside != "none":
            changed["positions"] = f"outside the training range, {spec.outside}, up to {spec.outside_depth} m"
        lines.append(f"- {spec.name}: {changed}")
    drops = {k: v for k, v in evaluation.dropped.items() if v}
    lines += ["", "### Reset seeds dropped because the scripted expert failed (another seed was drawn)", ""]
    lines += [f"- {k}: {v}" for k, v in drops.items()] or ["- none"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class EvaluationSummary:
    """Where the report went and its success table; printed by the CLI, read by the demo pipeline."""

    report: Path
    table: list[str]  # markdown rows: success per actor and scene

    def __str__(self) -> str:
        return "\n".join([f"report: {self.report}", *self.table])


def run_evaluate(cfg: EvaluateConfig, progress: bool = True) -> EvaluationSummary:
    """Evaluate the configured actors, write the markdown report (and every episode beside it as JSON)."""
    evaluation = evaluate(cfg, progress)
    path = Path(cfg.report)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, markdown_report(evaluation, cfg, write_media(evaluation, path)))
    # every episode, for tables of your own: load with load_evaluation(<report>.json)
    write_atomic(
        path.with_suffix(".json"),
        json.dumps(
            {
                "scenes": evaluation.scenes,
                "dropped": evaluation.dropped,
                "wall_s": evaluation.wall_s,
                "episodes": [dataclasses.asdict(r) for r in evaluation.episodes],
            },
            indent=1,
        ),
    )
    return EvaluationSummary(path, scene_table(evaluation.episodes, evaluation.scenes))
