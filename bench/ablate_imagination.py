"""Ablations on a finished `roboscape-r demo` run: each variant changes some of the demo's settings,
retrains only what they touch (PPO in imagination; when `bc_dataset` or a `policy.bc.*` or
`policy.policy.*` key changes, BC and the sim-PPO baseline from it too, so every compared policy gets
the same start), and is evaluated on the demo's own evaluation episodes. Episodes are seeded by their
identity, so each variant is paired with the demo's policies without evaluating those again.

    python bench/ablate_imagination.py outputs/demo-small \
        "long: policy.imagination.max_steps=38 policy.imagination.start_fraction=0 policy.imagination.done_steps=1" \
        "no-shift: policy.bc.shift=0"

Writes <run>/ablations/<name>/{bc,policy,evaluation}/ and <run>/ablations/ablations.md: the demo's and the
variants' success tables with paired tests, and imagined vs real success. A rerun skips finished variants.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from roboscape_r_ros.commands.demo import DemoConfig, baseline_steps, stage_configs
from roboscape_r_ros.commands.evaluate import run_evaluate
from roboscape_r_ros.commands.train_policy import (
    BC_FILE,
    IMAGINATION_FILE,
    POLICY_FILE,
    PolicyTrainResult,
    run_bc,
    run_imagination_ppo,
    run_sim_baseline,
)
from roboscape_r_ros.config import load_config
from roboscape_r_ros.rl.evaluate import load_evaluation
from roboscape_r_ros.rl.report import calibration_table, success_tables


def run_variant(run: Path, name: str, overrides: list[str], workers: int) -> list[str]:
    """Train and evaluate one variant; returns the names its policies are evaluated under."""
    folder = run / "ablations" / name
    cfg = load_config(DemoConfig, "demo", str(run / "config.yaml"), [f"output={run}", *overrides])
    configs = stage_configs(cfg)
    imagination, evaluate = configs["imagination"], configs["evaluate"]
    policies = {}
    imagination.output = str(folder / "policy")
    new_start = any(o.startswith(("policy.bc.", "policy.policy.", "bc_dataset=")) for o in overrides)
    if new_start:
        bc = configs["bc"]
        bc.output = str(folder / "bc")
        if not (folder / "bc" / BC_FILE).is_file():
            run_bc(bc)
        imagination.init = str(folder / "bc" / BC_FILE)
        policies[f"{name}/bc"] = imagination.init
    if not (folder / "policy" / "imagination.json").is_file():
        run_imagination_ppo(imagination)
    policies[name] = str(folder / "policy" / IMAGINATION_FILE)
    if new_start:
        sim_ppo = configs["sim_ppo"]
        sim_ppo.output, sim_ppo.init = str(folder / "sim_ppo"), imagination.init
        if not (folder / "sim_ppo" / POLICY_FILE).is_file():
            imagined = PolicyTrainResult.load(imagination.output, "imagination").imagined_steps
            sim_ppo.ppo.total_steps = baseline_steps(cfg, imagined)
            run_sim_baseline(sim_ppo)
        policies[f"{name}/sim-ppo"] = str(folder / "sim_ppo" / POLICY_FILE)
    evaluate.policies = [f"{n}={p}" for n, p in policies.items()]
    evaluate.ours, evaluate.random_actor, evaluate.expert_actor = [name], False, False
    evaluate.report, evaluate.workers = str(folder / "evaluation" / "report.md"), workers
    report = folder / "evaluation" / "report.json"
    if not report.is_file() or {r.actor for r in load_evaluation(report).episodes} != set(policies):
        run_evaluate(evaluate)
    return [name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished roboscape-r demo run folder")
    parser.add_argument("variants", nargs="+", help='"name: key=value key=value ..." (demo config overrides)')
    parser.add_argument("--workers", type=int, default=0, help="evaluation processes (0: one per CPU core)")
    args = parser.parse_args()
    episodes = load_evaluation(args.run / "evaluation" / "report.json")
    results, scenes, ours, imagined = list(episodes.episodes), episodes.scenes, [], {}
    for variant in args.variants:
        name, _, overrides = variant.partition(":")
        name = name.strip()
        ours += run_variant(args.run, name, overrides.split(), args.workers)
        folder = args.run / "ablations" / name
        results += load_evaluation(folder / "evaluation" / "report.json").episodes
        summary = json.loads((folder / "policy" / "imagination.json").read_text())
        if summary.get("imagined_success"):
            imagined[name] = summary["imagined_success"]["trained"]
        print(f"{name}: {overrides.strip()}")
    lines = ["# Ablations of " + str(args.run), ""]
    lines += [f"- `{v}`" for v in args.variants] + [""]
    lines += success_tables(results, scenes, ours)
    lines += ["", "## Imagined vs real success", "", *calibration_table(imagined, results), ""]
    path = args.run / "ablations" / "ablations.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"report: {path}")


if __name__ == "__main__":
    main()
