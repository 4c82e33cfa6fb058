"""`roboscape-r lab-loop`: the policy's own episodes in the world model's data, for K rounds.

    roboscape-r lab-loop run=outputs/demo-small rounds=2

A world model trained on demos, noise and failures of scripted experts has never seen what a learned
policy does, and PPO inside it finds the states where it is wrong and pays well. WMPO (arXiv
2511.09515) refitted its world model on the policy's own rollouts, failures included, and took
success from 33.6% to 47.1%; without that refit WoVR (arXiv 2602.13977) lost 10.5 points. This is that
loop on a finished `roboscape-r demo` folder, with its world model, BC start, imagination settings and
evaluation, every step the same code as its own command:

    round k = 1..K
      rollouts           the round's starting policy (round 1: the demo's imagination-ppo, or bc) runs
                         episodes_per_task episodes per task in the sim's training scene (reset seeds
                         apart from the evaluation's), appended to the previous round's dataset
      train-wm           the previous world model's dynamics and done head fine-tuned on that dataset:
                         demos, failures and every rollout so far; the held-out split stays as it was
      train-imagination  PPO in the refitted model, from the round's starting policy, its imagined
                         episodes started from the held-out episodes and the rollouts (`contexts`)
      evaluate           the new policy on the demo's evaluation episodes (the same identities: its
                         comparison with bc and sim-ppo is paired)
    report               LAB_LOOP.md: every round beside the demo's policies with paired tests,
                         imagined vs real success, and the real episodes each used

    <output>/config.yaml, stages.json, LAB_LOOP.md
    <output>/round_<k>/{dataset, world_model, policy, evaluation}

On a robot the rollouts are the graph's recordings (camera_ingest's `record.*`) instead of the sim's.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from roboscape_r_ros.commands.demo import OURS, DemoConfig, Stage, run_stages, stage_configs
from roboscape_r_ros.commands.evaluate import run_evaluate
from roboscape_r_ros.commands.rollouts import RolloutsConfig, run_rollouts
from roboscape_r_ros.commands.train_policy import BC_FILE, IMAGINATION_FILE, PolicyTrainConfig, run_imagination_ppo
from roboscape_r_ros.commands.train_wm import TrainWMConfig, run_train_wm
from roboscape_r_ros.config import ConfigError, from_dict, option
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.files import write_atomic
from roboscape_r_ros.markdown import table
from roboscape_r_ros.rl.evaluate import EvaluateConfig, load_evaluation
from roboscape_r_ros.rl.report import calibration_table, success_tables
from roboscape_r_ros.runs import RunFolder

REPORT_FILE = "LAB_LOOP.md"


@dataclass
class LabLoopConfig:
    run: str = option("", help="a finished `roboscape-r demo` run folder: its world model, BC, PPO and evaluation")
    output: str = option("", help="the loop's folder (default: <run>/lab_loop); rerunning resumes it")
    rounds: int = option(
        2, help="rounds of rollouts -> world-model fine-tune -> PPO in imagination -> evaluation", low=1
    )
    start: Literal["imagination", "bc"] = option(
        "imagination", help="the policy of round 1's rollouts and PPO start: the demo's imagination-ppo or its bc"
    )
    episodes_per_task: int = option(20, help="policy episodes recorded in the sim per task and round", low=1)
    finetune_steps: int = option(500, help="world-model training steps (dynamics and done head) per round", low=1)
    ppo_steps: int = option(0, help="PPO decisions per round (0: the demo's ppo.total_steps)", low=0)
    contexts: Literal["held_out", "held_out_and_added", "all"] = option(
        "held_out_and_added",
        help="where imagined episodes start: the world model's held-out episodes, those and every rollout, or all",
    )
    workers: int = option(0, help="processes of the rollouts and the evaluation (0: one per CPU core)", low=0)
    threads: int = option(0, help="torch CPU threads (0: torch's default)")


@dataclass(frozen=True)
class Round:
    """Where round k reads its inputs and writes its outputs."""

    k: int
    folder: Path
    policy_in: Path  # the policy whose rollouts it records and whose weights PPO starts from
    dataset_in: Path
    world_model_in: Path

    @property
    def name(self) -> str:
        return f"lab-round-{self.k}"

    @property
    def dataset(self) -> Path:
        return self.folder / "dataset"

    @property
    def world_model(self) -> Path:
        return self.folder / "world_model"

    @property
    def policy(self) -> Path:
        return self.folder / "policy"

    @property
    def evaluation(self) -> Path:
        return self.folder / "evaluation" / "report.md"


T = TypeVar("T")


def stage_config(demo: Mapping[str, object], stage: str, cls: type[T]) -> T:
    """The demo's config of ``stage`` (commands.demo.stage_configs), checked to be a ``cls``."""
    cfg = demo[stage]
    if not isinstance(cfg, cls):
        raise TypeError(f"the demo's {stage} config is a {type(cfg).__name__}, not a {cls.__name__}")
    return cfg


def plan_rounds(cfg: LabLoopConfig, demo: Mapping[str, object], out: Path) -> list[Round]:
    policies = Path(stage_config(demo, "bc", PolicyTrainConfig).output).parent
    first = policies / ("imagination/" + IMAGINATION_FILE if cfg.start == "imagination" else "bc/" + BC_FILE)
    rounds: list[Round] = []
    for k in range(1, cfg.rounds + 1):
        if rounds:
            last = rounds[-1]
            inputs = (last.policy / IMAGINATION_FILE, last.dataset, last.world_model)
        else:
            world_model = stage_config(demo, "world_model", TrainWMConfig)
            inputs = (first, Path(world_model.dataset), Path(world_model.run))
        rounds.append(Round(k, out / f"round_{k}", *inputs))
    return rounds


def demo_configs(run: str) -> tuple[DemoConfig, Mapping[str, object]]:
    if not run:
        raise ConfigError("no demo run given (run=<a finished roboscape-r demo folder>)")
    folder = RunFolder.open(run, create=False)
    if "evaluate" not in (folder.read_json("stages.json") if folder.file("stages.json").exists() else {}):
        raise ConfigError(f"{run}: not a finished roboscape-r demo run (no evaluate stage in stages.json)")
    demo = from_dict(DemoConfig, folder.read_config())
    demo.output = run  # the folder may have moved since it was written
    return demo, stage_configs(demo)


def round_stages(cfg: LabLoopConfig, demo: Mapping[str, object], r: Round) -> list[Stage]:
    evaluate_cfg = stage_config(demo, "evaluate", EvaluateConfig)

    def rollouts() -> str:
        summary = run_rollouts(
            RolloutsConfig(
                policy=str(r.policy_in),
                base=str(r.dataset_in),
                output=str(r.dataset),
                overwrite=True,
                env=copy.deepcopy(evaluate_cfg.env),
                episodes_per_task=cfg.episodes_per_task,
                seed=RolloutsConfig().seed + r.k,  # each round its own reset seeds, all apart from the evaluation's
                goal=evaluate_cfg.goal,
                goal_dataset=evaluate_cfg.goal_dataset,
                device=evaluate_cfg.device,
                workers=cfg.workers,
            )
        )
        return f"{summary.episodes} policy episodes ({summary.successes} successes) after {summary.base_episodes}"

    def train_wm() -> str:
        wm = from_dict(TrainWMConfig, RunFolder.open(r.world_model_in, create=False).read_config())
        wm.dataset, wm.run, wm.init, wm.finetune = str(r.dataset), str(r.world_model), str(r.world_model_in), ["action"]
        wm.model.train.action_steps, wm.threads = cfg.finetune_steps, cfg.threads
        return run_train_wm(wm).timing

    def imagination() -> str:
        policy = copy.deepcopy(stage_config(demo, "imagination", PolicyTrainConfig))
        policy.output, policy.init, policy.threads = str(r.policy), str(r.policy_in), cfg.threads
        policy.imagination.world_model, policy.imagination.dataset = str(r.world_model), str(r.dataset)
        policy.imagination.episodes = cfg.contexts
        if cfg.ppo_steps:
            policy.ppo.total_steps = cfg.ppo_steps
        steps = run_imagination_ppo(policy).imagined_steps
        assert steps is not None, "train-imagination counts its imagined steps"
        return f"{steps['world_model_steps']} world-model steps = {steps['control_steps']} control steps"

    def evaluate() -> str:
        evaluation = copy.deepcopy(evaluate_cfg)
        evaluation.policies = [f"{r.name}={r.policy / IMAGINATION_FILE}"]
        evaluation.ours, evaluation.random_actor, evaluation.expert_actor = [r.name], False, False
        evaluation.report, evaluation.workers = str(r.evaluation), cfg.workers
        return f"report: {run_evaluate(evaluation).report}"

    return [
        Stage(f"round-{r.k}/rollouts", "the policy's own episodes in the sim, appended to the dataset", rollouts),
        Stage(f"round-{r.k}/train-wm", "the world model fine-tuned on demos, failures and rollouts", train_wm),
        Stage(f"round-{r.k}/train-imagination", "PPO in the refitted world model", imagination),
        Stage(f"round-{r.k}/evaluate", "the new policy on the demo's evaluation episodes", evaluate),
    ]


def run_lab_loop(cfg: LabLoopConfig) -> Path:
    demo_cfg, demo = demo_configs(cfg.run)
    out = Path(cfg.output or Path(cfg.run) / "lab_loop")
    rounds = plan_rounds(cfg, demo, out)
    with RunFolder.open(out, lock=True) as folder:
        folder.write_config(cfg, must_match=("",), ignore=("rounds", "workers", "threads"))
        stages = [stage for r in rounds for stage in round_stages(cfg, demo, r)]
        done = run_stages(folder, stages, "roboscape-r lab-loop")
        path = out / REPORT_FILE
        write_atomic(path, "\n".join(report_lines(cfg, demo_cfg, demo, rounds, done)) + "\n")
    print(f"report: {path}", file=sys.stderr)
    return path


def report_lines(
    cfg: LabLoopConfig, demo_cfg: DemoConfig, demo: Mapping[str, object], rounds: list[Round], done: dict[str, dict]
) -> list[str]:
    base = load_evaluation(Path(stage_config(demo, "evaluate", EvaluateConfig).report).with_suffix(".json"))
    episodes = list(base.episodes)
    imagination = stage_config(demo, "imagination", PolicyTrainConfig)
    start = RunFolder.open(imagination.output, create=False).read_json("imagination.json")
    imagined = {}
    if start.get("imagined_success"):  # in the demo's own world model
        imagined = {"bc": start["imagined_success"]["init"], OURS: start["imagined_success"]["trained"]}
    rows = []
    for r in rounds:
        episodes += load_evaluation(r.evaluation.with_suffix(".json")).episodes
        summary = RunFolder.open(r.policy, create=False).read_json("imagination.json")
        if summary.get("imagined_success"):
            imagined[r.name] = summary["imagined_success"]["trained"]
        data = EpisodeDataset.open(r.dataset)
        rollouts = [e for e in data.episodes if e.kind == "policy"]
        rows.append(
            [
                r.name,
                f"{data.num_episodes - len(rollouts)} + {len(rollouts)} ({sum(e.success for e in rollouts)} successes)",
                summary["imagined_steps"]["control_steps"],
                done[f"round-{r.k}/train-wm"]["result"],
            ]
        )
    return [
        "# roboscape-r lab-loop report",
        "",
        f"Demo run `{cfg.run}`; {cfg.rounds} rounds from its {cfg.start} policy: {cfg.episodes_per_task} sim "
        f"episodes per task and round, world model fine-tuned {cfg.finetune_steps} steps per round, imagined "
        f"episodes started from `{cfg.contexts}`. Tasks: {', '.join(demo_cfg.collect.env.tasks)}.",
        "",
        "## Rounds",
        "",
        *table(
            [
                "policy",
                "real episodes: world-model data + the policy's rollouts",
                "imagined control steps",
                "world-model fine-tune",
            ],
            rows,
        ),
        "",
        "## Success in the physics sim",
        "",
        "The demo's policies and every round's, on the same evaluation episodes (paired).",
        "",
        *success_tables(episodes, base.scenes, [r.name for r in rounds]),
        "",
        "## Imagined vs real success (calibration)",
        "",
        "Imagined: the done head fired within a sim episode's length from held-out first frames, with the mean "
        "action, in the world model each policy was trained in (bc and imagination-ppo: the demo's).",
        "",
        *calibration_table(imagined, episodes),
        "",
        "Stage times: " + ", ".join(f"{name} {s['wall_s']:.0f} s" for name, s in done.items()),
    ]
