"""`roboscape-r demo`: the whole method end to end in one run folder.

    collect -> train-wm -> evaluate-wm -> reward-sanity -> train-bc -> train-imagination -> train-sim-ppo
            [-> train-imagination-wall] -> evaluate -> report

Each stage is the same code as its own command; the pipeline only wires their paths inside one run
folder and gives the baseline its budget:

    <output>/config.yaml        the resolved pipeline config
    <output>/stages.json        finished stages with wall time and result (a rerun skips them)
    <output>/dataset/           collect
    <output>/world_model/       train-wm (resumes inside a stage after a kill)
    <output>/world_model_eval/  evaluate-wm: the world model on its held-out episodes, controllability sheet
    <output>/reward_sanity/     does the endogenous reward rise toward success on held-out demos
    <output>/policies/{bc,imagination,sim_ppo,imagination_wall}/
    <output>/evaluation/        success in the physics sim, in-domain and out-of-domain
    <output>/REPORT.md          all of it on one page

One environment, ``collect.env``, is the in-domain scene everywhere: the dataset, the sim baseline
and the evaluation. With ``world_model_run`` an existing world model (and its dataset) is used
instead of collecting and training one. The exogenous-reward baseline (PPO in the physics sim with Meta-World's dense
reward) gets as many environment steps as imagination PPO imagined: with ``baseline_budget =
control_steps`` (default) as many sim control steps as the world-model steps stood for (x frame_skip),
with ``decisions`` as many policy decisions. Imagined steps are cheaper than simulated ones, so with
``equal_wall_time`` a second imagination-PPO policy (``imagination-ppo-wall``) gets the decisions it makes in
sim-PPO's measured wall time, at the rate train-imagination measured: both comparisons in one report
(on by default).
"""

from __future__ import annotations

import copy
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import torch

from roboscape_r_ros.commands.collect import run_collect
from roboscape_r_ros.commands.demo_report import (
    OURS,
    OURS_WALL,
    WM_EVAL_DIR,
    imagined_steps,
    summary,
    wm_metrics,
    world_model_figures,
    write_report,
)
from roboscape_r_ros.commands.evaluate import run_evaluate
from roboscape_r_ros.commands.evaluate_wm import EvaluateWMConfig, run_evaluate_wm
from roboscape_r_ros.commands.reward_sanity import GOAL_SOURCES, RewardSanityConfig, run_reward_sanity
from roboscape_r_ros.commands.train_policy import (
    BC_FILE,
    IMAGINATION_FILE,
    POLICY_FILE,
    PolicyTrainConfig,
    PolicyTrainResult,
    run_bc,
    run_imagination_ppo,
    run_sim_baseline,
)
from roboscape_r_ros.commands.train_wm import TrainWMConfig, run_train_wm
from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.data.collect import CollectConfig
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.markdown import duration, number, percent
from roboscape_r_ros.rl.evaluate import EvaluateConfig
from roboscape_r_ros.runs import RunFolder

STAGES_FILE = "stages.json"


@dataclass
class DemoConfig:
    output: str = option("outputs/demo", help="run folder of the whole pipeline; rerunning resumes it")
    fresh: bool = option(False, help="delete the run folder first and start over")
    world_model_run: str = option(
        "",
        help="an existing train-wm run folder: skip collect and train-wm and use it "
        "with the dataset its split.json names (e.g. a world model trained on a GPU)",
    )
    collect: CollectConfig = option(CollectConfig(), help="dataset; its env is the in-domain scene of every stage")
    world_model: TrainWMConfig = option(TrainWMConfig(), help="world model (dataset and run folder are set here)")
    evaluate_wm: EvaluateWMConfig = option(
        EvaluateWMConfig(),
        help=f"the world model on its held-out episodes, into <output>/{WM_EVAL_DIR} (run and output are set here)",
    )
    reward_sanity: bool = option(True, help="score the endogenous reward on held-out demos before RL")
    policy: PolicyTrainConfig = option(
        PolicyTrainConfig(), help="BC warm start, PPO, imagination env, sim env (paths and the sim env are set here)"
    )
    bc_dataset: str = option(
        "",
        help="BC clones this dataset's successful episodes instead of the run's (more or scene-diverse scripted "
        "demos: collect scene_draws.*); BC is the start of every compared policy, so all of them get it",
    )
    baseline_budget: Literal["control_steps", "decisions"] = option(
        "control_steps",
        help="sim-PPO budget: imagination's imagined control steps (world-model steps x frame_skip) or its decisions",
    )
    equal_wall_time: bool = option(
        True,
        help="also train imagination-PPO for sim-PPO's wall time (at its own measured decision rate) and "
        f"evaluate it as '{OURS_WALL}'",
    )
    evaluate: EvaluateConfig = option(
        EvaluateConfig(), help="evaluation in the physics sim (policies, env and report path are set here)"
    )
    threads: int = option(
        0,
        help="torch CPU threads of every stage (0: torch's default); evaluate.workers "
        "sets the evaluation's processes (default: one per CPU core, one thread each)",
    )

    def __post_init__(self) -> None:
        sizes = {
            "collect.env.resolution": self.collect.env.resolution,
            "world_model.model.image_size": self.world_model.model.image_size,
            "policy.policy.image_size": self.policy.policy.image_size,
        }
        if len(set(sizes.values())) > 1:
            raise ConfigError("frame sizes disagree: " + ", ".join(f"{k}={v}" for k, v in sizes.items()))


@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    run: Callable[[], str]  # returns a short result line for the summary


class StageConfigs(TypedDict):
    """Every stage's config, by stage (the policy stages share one config type)."""

    collect: CollectConfig
    world_model: TrainWMConfig
    evaluate_wm: EvaluateWMConfig
    reward_sanity: RewardSanityConfig
    bc: PolicyTrainConfig
    imagination: PolicyTrainConfig
    sim_ppo: PolicyTrainConfig
    imagination_wall: PolicyTrainConfig
    evaluate: EvaluateConfig


def stage_configs(cfg: DemoConfig) -> StageConfigs:
    """Every stage's config with its paths inside the run folder (copies; ``cfg`` is left alone)."""
    out = Path(cfg.output)
    dataset, wm_run, policies = out / "dataset", out / "world_model", out / "policies"
    if cfg.world_model_run:
        wm_run = Path(cfg.world_model_run)
        dataset = Path(RunFolder.open(wm_run, create=False).read_json("split.json")["dataset"])
        tasks = sorted({e.task for e in EpisodeDataset.open(dataset).episodes})
        if tasks != sorted(cfg.collect.env.tasks):
            raise ConfigError(
                f"{dataset} holds tasks {tasks}; set collect.env.tasks to them (collect.env is the "
                "in-domain scene of the sim baseline and the evaluation)"
            )
    collect = copy.deepcopy(cfg.collect)
    collect.output, collect.overwrite = str(dataset), True  # the pipeline's own dataset: a rerun rewrites it

    world_model = copy.deepcopy(cfg.world_model)
    world_model.dataset, world_model.run, world_model.threads = str(dataset), str(wm_run), cfg.threads

    policy = copy.deepcopy(cfg.policy)
    policy.bc.dataset, policy.threads = cfg.bc_dataset or str(dataset), cfg.threads
    policy.imagination.world_model, policy.imagination.dataset = str(wm_run), str(dataset)
    policy.sim.env = copy.deepcopy(cfg.collect.env)
    if policy.sim.goal == "demo":
        policy.sim.goal_dataset = str(dataset)
    bc = copy.deepcopy(policy)
    bc.output = str(policies / "bc")
    imagination = copy.deepcopy(policy)
    imagination.output, imagination.init = str(policies / "imagination"), str(policies / "bc" / BC_FILE)
    sim_ppo = copy.deepcopy(imagination)
    sim_ppo.output = str(policies / "sim_ppo")
    imagination_wall = copy.deepcopy(imagination)
    imagination_wall.output = str(policies / "imagination_wall")

    goal = policy.imagination.goal if policy.imagination.goal in GOAL_SOURCES else "demo"
    sanity = RewardSanityConfig(
        run=str(wm_run),
        goals=[goal],
        reward=copy.deepcopy(policy.imagination.reward),
        output=str(out / "reward_sanity"),
        threads=cfg.threads,
        device=policy.device,
    )

    evaluate_wm = copy.deepcopy(cfg.evaluate_wm)
    evaluate_wm.run, evaluate_wm.output, evaluate_wm.threads = str(wm_run), str(out / WM_EVAL_DIR), cfg.threads
    # the pipeline's one device: any torch device name ("cuda:1" too), which torch_device checks
    evaluate_wm.device = policy.device

    evaluate = copy.deepcopy(cfg.evaluate)
    evaluate.env = copy.deepcopy(cfg.collect.env)
    evaluate.policies = [
        f"{OURS}={policies / 'imagination' / IMAGINATION_FILE}",
        f"bc={policies / 'bc' / BC_FILE}",
        f"sim-ppo={policies / 'sim_ppo' / POLICY_FILE}",
    ]
    evaluate.ours, evaluate.device = [OURS], policy.device
    if cfg.equal_wall_time:
        evaluate.policies.insert(1, f"{OURS_WALL}={policies / 'imagination_wall' / IMAGINATION_FILE}")
        evaluate.ours.append(OURS_WALL)
    evaluate.report = str(out / "evaluation" / "report.md")
    if evaluate.goal == "demo":
        evaluate.goal_dataset = str(dataset)
    return {
        "collect": collect,
        "world_model": world_model,
        "evaluate_wm": evaluate_wm,
        "reward_sanity": sanity,
        "bc": bc,
        "imagination": imagination,
        "sim_ppo": sim_ppo,
        "imagination_wall": imagination_wall,
        "evaluate": evaluate,
    }


def baseline_steps(cfg: DemoConfig, imagined: dict[str, int]) -> int:
    """PPO decisions for the sim baseline: the same environment steps imagination PPO had."""
    if cfg.baseline_budget == "decisions":
        return imagined["decisions"]
    return max(1, imagined["control_steps"] // cfg.policy.policy.chunk)


def wall_time_decisions(imagined: PolicyTrainResult, wall_s: float) -> int:
    """PPO decisions imagination makes in ``wall_s`` at the rate it measured (its PPO part's wall time)."""
    rate = imagined_steps(imagined)["decisions"] / imagined.wall_s
    return max(1, round(rate * wall_s))


def build_stages(cfg: DemoConfig, configs: StageConfigs) -> list[Stage]:
    def collect() -> str:
        summary = run_collect(configs["collect"])
        return f"{summary.episodes} episodes, {summary.frames} frames, {summary.size_bytes / 2**20:.1f} MiB"

    def train_wm() -> str:
        return run_train_wm(configs["world_model"]).timing

    def evaluate_wm() -> str:
        run_evaluate_wm(configs["evaluate_wm"])
        figures = world_model_figures(wm_metrics(configs))
        return (
            f"{figures['horizon']}-step gain {figures['gain']}, dPSNR {figures['dpsnr']}; done fires on successes: "
            f"{figures['done_fired']}; sheet divergence {figures['divergence']}"
        )

    def sanity() -> str:
        rows = []
        for task in run_reward_sanity(configs["reward_sanity"]).tasks:
            rho, fired = task.spearman_reward_time, task.done_fired_on_success
            rows.append(f"{task.task} rho {number(rho, sign=True)}")
            rows[-1] += f", done fired {percent(fired)}" if fired is not None else ""
        return "; ".join(rows)

    def bc() -> str:
        final = run_bc(configs["bc"]).final
        return ", ".join(
            f"{k.removeprefix('bc/').replace('_', ' ')} {v:.3g}" for k, v in final.items() if k.startswith("bc/")
        )

    def imagination() -> str:
        steps = imagined_steps(run_imagination_ppo(configs["imagination"]))
        return f"{steps['world_model_steps']} world-model steps = {steps['control_steps']} control steps"

    def sim_ppo() -> str:
        sim_cfg = configs["sim_ppo"]
        imagined = imagined_steps(PolicyTrainResult.load(configs["imagination"].output, "imagination"))
        sim_cfg.ppo.total_steps = baseline_steps(cfg, imagined)
        run_sim_baseline(sim_cfg)
        return f"{sim_cfg.ppo.total_steps} decisions x {sim_cfg.policy.chunk} control steps in the sim"

    def imagination_wall() -> str:
        wall_cfg = configs["imagination_wall"]
        imagined = PolicyTrainResult.load(configs["imagination"].output, "imagination")
        sim_wall_s = PolicyTrainResult.load(configs["sim_ppo"].output, "ppo").wall_s
        wall_cfg.ppo.total_steps = wall_time_decisions(imagined, sim_wall_s)
        steps = imagined_steps(run_imagination_ppo(wall_cfg))
        return (
            f"{steps['decisions']} decisions ({steps['control_steps']} control steps) for sim-PPO's "
            f"{duration(sim_wall_s)}"
        )

    def evaluate() -> str:
        return f"report: {run_evaluate(configs['evaluate']).report}"

    stages = [
        Stage("collect", "record scripted-expert, noisy, failed and random episodes", collect),
        Stage("train-wm", "tokenizer, action world model with done head, goal model", train_wm),
        Stage("evaluate-wm", "the world model on held-out episodes: open loop, done head, held actions", evaluate_wm),
        Stage("reward-sanity", "endogenous reward vs progress and done vs success on held-out demos", sanity),
        Stage("train-bc", "behaviour-cloning warm start on the successful episodes", bc),
        Stage("train-imagination", "PPO inside the world model with its own reward", imagination),
        Stage("train-sim-ppo", "baseline: PPO in the physics sim with Meta-World's hand-written reward", sim_ppo),
        Stage("train-imagination-wall", "PPO inside the world model for as long as sim-PPO trained", imagination_wall),
        Stage("evaluate", "success in the physics sim, in-domain and out-of-domain", evaluate),
    ]
    skipped = {"reward-sanity"} if not cfg.reward_sanity else set()
    if not cfg.equal_wall_time:
        skipped.add("train-imagination-wall")
    if cfg.world_model_run:
        skipped |= {"collect", "train-wm"}
    return [s for s in stages if s.name not in skipped]


def _read_stages(run: RunFolder) -> dict[str, dict[str, Any]]:
    return run.read_json(STAGES_FILE) if run.file(STAGES_FILE).exists() else {}


def run_demo(cfg: DemoConfig) -> str:
    out = Path(cfg.output)
    if cfg.fresh and out.exists():
        shutil.rmtree(out)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    configs = stage_configs(cfg)
    with RunFolder.open(out, lock=True) as run:
        # speed alone: a resumed run may use other thread and worker counts
        run.write_config(cfg, must_match=("",), ignore=("fresh", "threads", "evaluate.workers"))
        done = run_stages(run, build_stages(cfg, configs), "roboscape-r demo")
        report = write_report(cfg, configs, done)
    return summary(done, report, configs)


def run_stages(run: RunFolder, stages: list[Stage], command: str) -> dict[str, dict[str, Any]]:
    """Run the stages not yet in the folder's stages.json, in order, recording each one's wall time and result."""
    done = _read_stages(run)
    start = time.perf_counter()
    print(f"{command}: {len(stages)} stages into {run.path}", file=sys.stderr)
    for i, stage in enumerate(stages, 1):
        head = f"[{i}/{len(stages)}] {stage.name}"
        if stage.name in done:
            print(f"{head}: done in an earlier run ({done[stage.name]['result']})", file=sys.stderr)
            continue
        print(f"\n{head}: {stage.what} (elapsed {duration(time.perf_counter() - start)})", file=sys.stderr, flush=True)
        began = time.perf_counter()
        result = stage.run()
        done[stage.name] = {"wall_s": time.perf_counter() - began, "result": result}
        run.write_json(STAGES_FILE, done)
        print(f"{head}: {result} ({duration(done[stage.name]['wall_s'])})", file=sys.stderr, flush=True)
    return done
