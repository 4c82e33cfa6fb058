"""Success rates in the physics sim, in-domain and out-of-domain, for several actors on the same episodes.

For every task, scene, evaluation seed and episode a reset seed is drawn and the scripted expert is
rolled out from it first (``ExpertGoal``): its end frame is the episode's goal frame. A seed the
expert cannot solve is dropped, counted, and another is drawn (up to ``expert_draws``): that is how
out-of-range positions are checked, the expert must still succeed there. Every actor then runs the same episode from the
same seed (a paired comparison) until Meta-World's success flag or the step cap. Scenes draw the same
reset seeds too, so an in-domain episode and its recoloured or relit twin start from the same state.
The report gets a plot of success per scene with its intervals and, per scene, a GIF of each task's
first episode: the goal frame beside every actor's run.

Out-of-domain scenes use the scene variation API: colours, lighting, camera jitter, and object/goal
start positions in a box just outside the task's training range (``outside`` = x+, x-, y+ or y-:
the box adjoins the training range on that side and reaches ``outside_depth`` metres beyond it).
Measured: Meta-World clips the observation the experts read to the task's observation space, whose
goal bounds are the training goal range, so an expert aims at the range's edge and solves goals
beyond it only within its success radius (reach-v3, 5 cm outside on x: 4 of 8 reset seeds; on y: 7
of 8; push-v3: 6-8 of 8). Hence the default depth of 5 cm and several expert draws per episode.

An episode's randomness comes from its identity alone: its reset seeds are drawn from a stream keyed
by (evaluation seed, task, episode), and every actor's own randomness (random actions, a sampled
policy) is seeded with the episode's reset seed. So an episode turns out the same wherever and in
whatever order it runs: with ``workers`` > 1 episodes run in spawned worker processes, each with one
torch thread, its own env and its own actors loaded from the policy files, and give the same
outcomes as ``workers=1`` (one after another in this process). Results are kept in report order.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import multiprocessing.util
import os
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.data.collect import Rollout, roll_out
from roboscape_r_ros.data.lerobot import Episode
from roboscape_r_ros.envs.metaworld_env import EnvConfig, PixelMetaWorldEnv
from roboscape_r_ros.envs.scene import SceneVariation, SceneVariationError
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.rl.actors import Actor, ExpertActor, PolicyActor, RandomActor
from roboscape_r_ros.rl.goals import DemoGoal, ExpertGoal, GoalSource
from roboscape_r_ros.rl.policy import ImagePolicy
from roboscape_r_ros.rl.report import IN_DOMAIN, EpisodeResult

AXES = {"x": 0, "y": 1}
CLIP_EVERY = 3  # control steps between the frames of a report GIF


@dataclass
class SceneSpec:
    name: str = option("scene", help="label of the scene in the report")
    scene: SceneVariation = option(SceneVariation(), help="colours, lighting and camera jitter")
    outside: Literal["none", "x+", "x-", "y+", "y-"] = option(
        "none", help="start object and goal in a box beside the training range on this side"
    )
    outside_depth: float = option(0.05, help="metres the outside box reaches beyond the training range")


def default_ood_scenes() -> list[SceneSpec]:
    v = SceneVariation
    return [
        SceneSpec("table-colour", v(table_rgba=(0.25, 0.35, 0.75, 1.0))),
        SceneSpec("object-colour", v(object_rgba=(0.9, 0.75, 0.1, 1.0))),
        SceneSpec("background", v(background_rgb=(0.55, 0.45, 0.35))),
        SceneSpec("lighting", v(light_scale=0.5, headlight_ambient=(0.35, 0.35, 0.35))),
        SceneSpec("camera-jitter", v(camera_position_jitter=0.03, camera_rotation_jitter=4.0)),
        SceneSpec("positions-x+", outside="x+"),
        SceneSpec("positions-x-", outside="x-"),
        SceneSpec("positions-y+", outside="y+"),
    ]


@dataclass
class EvaluateConfig:
    policies: list[str] = option([], help="policies to evaluate, each name=path/to/policy.safetensors")
    ours: list[str] = option(
        [], help="policies whose relative improvement over the other actors (the baselines) is reported"
    )
    random_actor: bool = option(True, help="also evaluate uniform random actions (the floor)")
    expert_actor: bool = option(False, help="also evaluate the scripted expert (the ceiling)")
    env: EnvConfig = option(EnvConfig(), help="tasks, resolution, camera and step cap; its scene is the in-domain one")
    seeds: list[int] = option([0, 1, 2], help="evaluation seeds (each draws its own episodes)")
    episodes_per_seed: int = option(4, help="episodes per task, scene and seed", low=1)
    expert_draws: int = option(8, help="reset seeds tried per episode until the scripted expert solves one", low=1)
    in_domain: bool = option(True, help="evaluate the in-domain scene")
    ood_scenes: list[SceneSpec] = option(default_ood_scenes(), help="out-of-domain scenes")
    goal: Literal["expert", "demo"] = option("expert", help="goal frames: the expert's end frame or a demo's last")
    goal_dataset: str = option("", help="dataset of demo goal frames (goal=demo)")
    deterministic: bool = option(True, help="policies act with their mean action")
    min_baseline: float = option(0.05, help="baselines below this success rate get no relative improvement")
    device: str = option("cpu", help="torch device of the policies")
    report: str = option("outputs/eval/report.md", help="markdown report path (every episode goes beside it as .json)")
    workers: int = option(
        0,
        help="processes running episodes side by side, each loading the policies on device "
        "(0: one per CPU core; 1: one after another in this process); outcomes do not depend on it",
        low=0,
    )

    def __post_init__(self) -> None:
        for entry in self.policies:
            name, sep, path = entry.partition("=")
            if not sep or not name or not path:
                raise ConfigError(f"policies entry '{entry}' is not name=path")
        if not self.seeds:
            raise ConfigError("evaluate needs at least one seed")
        if self.goal == "demo" and not self.goal_dataset:
            raise ConfigError("goal=demo needs goal_dataset=<dataset folder>")


@dataclass
class Evaluation:
    episodes: list[EpisodeResult]
    dropped: dict[str, int]  # "task / scene" -> reset seeds dropped because the scripted expert failed
    scenes: list[str]  # scene names in evaluation order
    wall_s: float
    # scene -> task -> {"goal": [1,H,W,3], actor: [T,H,W,3] every CLIP_EVERY steps}: each task's first episode
    clips: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)


def outside_scene(spec: SceneSpec, low: np.ndarray, high: np.ndarray) -> SceneVariation:
    """``spec.scene`` with object (and goal) ranges in a box just outside [low, high] on one side."""
    if spec.outside == "none":
        return spec.scene
    axis, side = AXES[spec.outside[0]], spec.outside[1]
    boxes = []
    for start in range(0, len(low), 3):  # object xyz, then goal xyz for tasks that draw a goal
        box_low, box_high = low[start : start + 3].copy(), high[start : start + 3].copy()
        if side == "+":
            box_low[axis], box_high[axis] = high[start + axis], high[start + axis] + spec.outside_depth
        else:
            box_low[axis], box_high[axis] = low[start + axis] - spec.outside_depth, low[start + axis]
        boxes.append((tuple(box_low.tolist()), tuple(box_high.tolist())))
    return dataclasses.replace(spec.scene, object_range=boxes[0], goal_range=boxes[1] if len(boxes) > 1 else None)


def run_episode(
    env: PixelMetaWorldEnv, actor: Actor, goal: np.ndarray, seed: int, steps_after_success: int = 0
) -> Rollout:
    """One episode of ``actor`` from reset ``seed``, to its first success (and ``steps_after_success`` control
    steps beyond it) or the step cap; chunks run open loop."""
    actor.reset(env.task, seed)

    def act(obs: dict[str, np.ndarray], info: dict) -> np.ndarray:
        return actor({"image": obs["image"], "goal": goal}, info)

    return roll_out(env, act, seed, steps_after_success)


def clip_frames(rollout: Rollout) -> np.ndarray:
    """uint8 [T,H,W,3]: every CLIP_EVERY-th frame of an episode and its last one."""
    images = rollout.images
    return np.stack(images[::CLIP_EVERY] + ([images[-1]] if (len(images) - 1) % CLIP_EVERY else []))


def expert_checked_seed(
    env: PixelMetaWorldEnv, rng: np.random.Generator, draws: int
) -> tuple[int | None, np.ndarray | None, int]:
    """Draw reset seeds until the scripted expert solves one: (seed, its goal frame, failed draws).

    (None, None, draws) when every draw failed, or the scene rejects its positions outright.
    """
    check = ExpertGoal()
    for failed in range(draws):
        seed = int(rng.integers(2**31))
        try:
            run = check(env, seed)
        except SceneVariationError:  # the task rejects positions this far out: no draw can succeed
            return None, None, draws
        if run.expert_success:
            return seed, run.image, failed
    return None, None, draws


def evaluation_scenes(cfg: EvaluateConfig) -> list[SceneSpec]:
    return ([SceneSpec(IN_DOMAIN, cfg.env.scene)] if cfg.in_domain else []) + list(cfg.ood_scenes)


@dataclass(frozen=True)
class EpisodeSpec:
    """One evaluation episode by its identity, from which all its randomness is derived."""

    index: int  # position in report order
    task: str
    scene: SceneSpec
    seed: int  # evaluation seed
    episode: int  # episode number under that seed
    clip: bool = False  # record frames for the report's GIF

    def draws(self) -> np.random.Generator:
        """The stream of this episode's reset seeds; without the scene, so every scene gets the same ones."""
        return np.random.default_rng((self.seed, zlib.crc32(self.task.encode()), self.episode))

    def __str__(self) -> str:
        return f"{self.task} / {self.scene.name}, seed {self.seed}, episode {self.episode}"


@dataclass(frozen=True)
class Recording:
    """Keep every actor's episode as a dataset episode of ``kind``, run on ``steps_after_success`` control steps
    after its first success (as collect records them)."""

    kind: str
    steps_after_success: int


@dataclass
class EpisodeOutcome:
    spec: EpisodeSpec
    results: list[EpisodeResult]  # one per actor; none when the scripted expert failed every draw
    dropped: int  # reset seeds dropped because the scripted expert failed
    clip: dict[str, np.ndarray] | None = None  # {"goal": [1,H,W,3], actor: [T,H,W,3]} when spec.clip
    recorded: list[Episode] = field(default_factory=list)  # one per actor, with a Recording


def episode_specs(cfg: EvaluateConfig) -> list[EpisodeSpec]:
    """Every episode in report order; each task's first episode in a scene records its clip."""
    keys = [
        (task, scene, seed, episode)
        for task in cfg.env.tasks
        for scene in evaluation_scenes(cfg)
        for seed in cfg.seeds
        for episode in range(cfg.episodes_per_seed)
    ]
    return [EpisodeSpec(i, *key, clip=key[2:] == (cfg.seeds[0], 0)) for i, key in enumerate(keys)]


class EvaluationError(RoboscapeError, RuntimeError):
    """An episode failed; the message names it and the error."""


class EpisodeRunner:
    """Runs episodes from their specs: the actors (loaded on the first episode unless given), the goal source
    and one env, kept while task and scene stay; with a ``recording`` each actor's episode is kept too."""

    workers = 1

    def __init__(self, cfg: EvaluateConfig, actors: dict[str, Actor] | None = None, recording: Recording | None = None):
        self.cfg, self.actors, self.recording = cfg, actors, recording
        self.goal_source: GoalSource | None = None
        self._env: PixelMetaWorldEnv | None = None
        self._env_for: tuple[str, SceneSpec] | None = None

    def map(self, specs: list[EpisodeSpec]) -> Iterator[EpisodeOutcome]:
        """One after another, in this process (workers=1)."""
        return map(self.run, specs)

    def run(self, spec: EpisodeSpec) -> EpisodeOutcome:
        try:
            if self.actors is None:
                self.actors = build_actors(self.cfg)
            if self.cfg.goal == "demo" and self.goal_source is None:
                self.goal_source = DemoGoal(self.cfg.goal_dataset, seed=self.cfg.seeds[0])
            return self._run(spec, self._scene_env(spec.task, spec.scene))
        except Exception as err:
            raise EvaluationError(f"episode {spec} failed: {type(err).__name__}: {err}") from err

    def _run(self, spec: EpisodeSpec, env: PixelMetaWorldEnv) -> EpisodeOutcome:
        reset_seed, goal, failed = expert_checked_seed(env, spec.draws(), self.cfg.expert_draws)
        if reset_seed is None:
            return EpisodeOutcome(spec, [], failed)
        assert goal is not None, "the expert's goal frame comes with its seed"
        assert self.actors is not None, "run() built them"
        if self.goal_source is not None:
            goal = self.goal_source(env, reset_seed).image
        clip = {"goal": goal[None]} if spec.clip else None
        results, recorded = [], []
        after = self.recording.steps_after_success if self.recording else 0
        for name, actor in self.actors.items():
            rollout = run_episode(env, actor, goal, reset_seed, after)
            steps = rollout.success_step if rollout.success_step is not None else len(rollout.actions)
            results.append(
                EpisodeResult(
                    name, spec.task, spec.scene.name, spec.seed, spec.episode, reset_seed, rollout.success, steps
                )
            )
            if clip is not None:
                clip[name] = clip_frames(rollout)
            if self.recording:
                recorded.append(rollout.episode(self.recording.kind))
        return EpisodeOutcome(spec, results, failed, clip, recorded)

    def _scene_env(self, task: str, scene: SceneSpec) -> PixelMetaWorldEnv:
        if self._env is None or self._env_for != (task, scene):
            self.close()
            env = PixelMetaWorldEnv(task, self.cfg.env)
            try:
                reset_space = env.reset_space
                env.set_scene(outside_scene(scene, reset_space.low, reset_space.high))
            except BaseException:
                env.close()
                raise
            self._env, self._env_for = env, (task, scene)
        return self._env

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
        self._env = self._env_for = None


_worker_runner: EpisodeRunner | None = None  # in a worker process


def _start_worker(cfg: EvaluateConfig, recording: Recording | None) -> None:
    global _worker_runner
    torch.set_num_threads(1)  # one process per core
    _worker_runner = EpisodeRunner(cfg, recording=recording)
    # its env goes when the worker ends, before the interpreter's exit: atexit would end EGL first
    multiprocessing.util.Finalize(None, _worker_runner.close, exitpriority=0)


def _run_in_worker(spec: EpisodeSpec) -> EpisodeOutcome:
    assert _worker_runner is not None, "_start_worker made it in this process"
    return _worker_runner.run(spec)


class PoolEpisodes:
    """Episodes in ``workers`` spawned processes (a fork would inherit torch's and EGL's state); outcomes as
    they finish."""

    def __init__(self, cfg: EvaluateConfig, workers: int, recording: Recording | None = None):
        self.workers = workers
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(cfg, recording),
        )

    def map(self, specs: list[EpisodeSpec]) -> Iterator[EpisodeOutcome]:
        futures = [self.pool.submit(_run_in_worker, spec) for spec in specs]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BrokenProcessPool as err:
            raise EvaluationError(
                f"a worker process died ({err}); workers=1 runs the episodes in this process "
                "and shows the one that kills it"
            ) from None

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


def worker_count(workers: int, episodes: int) -> int:
    return max(1, min(workers or os.cpu_count() or 1, episodes))


def open_runner(
    cfg: EvaluateConfig, actors: dict[str, Actor], episodes: int, recording: Recording | None = None
) -> EpisodeRunner | PoolEpisodes:
    """Episodes in this process (``actors``) or, with cfg.workers > 1, in worker processes (actors of their own)."""
    workers = worker_count(cfg.workers, episodes)
    return EpisodeRunner(cfg, actors, recording) if workers == 1 else PoolEpisodes(cfg, workers, recording)


def progress_bar(name: str, runner: EpisodeRunner | PoolEpisodes, total: int, progress: bool) -> tqdm:
    desc = name if runner.workers == 1 else f"{name} ({runner.workers} workers)"
    return tqdm(total=total, unit="episode", desc=desc, disable=not progress)


def gather(outcomes: Iterator[EpisodeOutcome], into: list[EpisodeOutcome | None], bar: tqdm) -> None:
    for outcome in outcomes:
        into[outcome.spec.index] = outcome
        bar.set_postfix(task=outcome.spec.task, scene=outcome.spec.scene.name, refresh=False)
        bar.update()


def complete(outcomes: list[EpisodeOutcome | None]) -> list[EpisodeOutcome]:
    """The outcomes ``gather`` filled in, every slot once the runner answered every spec."""
    filled = [outcome for outcome in outcomes if outcome is not None]
    if len(filled) != len(outcomes):
        raise EvaluationError(f"{len(outcomes) - len(filled)} of {len(outcomes)} episodes have no outcome")
    return filled


def clip_reruns(outcomes: list[EpisodeOutcome]) -> list[EpisodeSpec]:
    """Where a task's first episode in a scene was dropped: its first kept one, to run again with frames."""
    first: dict[tuple[str, str], EpisodeOutcome] = {}
    for outcome in outcomes:
        if outcome.results:
            first.setdefault((outcome.spec.task, outcome.spec.scene.name), outcome)
    return [dataclasses.replace(o.spec, clip=True) for o in first.values() if o.clip is None]


def evaluate(cfg: EvaluateConfig, progress: bool = True) -> Evaluation:
    """Run every actor on the same expert-checked episodes; a scene named IN_DOMAIN counts as in-domain."""
    start = time.perf_counter()
    actors = build_actors(cfg)  # in this process too: a policy that does not load fails before any episode
    specs = episode_specs(cfg)
    outcomes: list[EpisodeOutcome | None] = [None] * len(specs)
    runner = open_runner(cfg, actors, len(specs))
    try:
        with progress_bar("evaluate", runner, len(specs), progress) as bar:
            gather(runner.map(specs), outcomes, bar)
            reruns = clip_reruns(complete(outcomes))
            bar.total += len(reruns)
            gather(runner.map(reruns), outcomes, bar)  # the same outcomes again, now with frames
    finally:
        runner.close()
    return collate(complete(outcomes), evaluation_scenes(cfg), time.perf_counter() - start)


def collate(outcomes: list[EpisodeOutcome], scenes: list[SceneSpec], wall_s: float) -> Evaluation:
    dropped: dict[str, int] = {}
    clips: dict[str, dict[str, dict[str, np.ndarray]]] = {scene.name: {} for scene in scenes}
    for outcome in outcomes:
        task, scene = outcome.spec.task, outcome.spec.scene.name
        dropped[f"{task} / {scene}"] = dropped.get(f"{task} / {scene}", 0) + outcome.dropped
        if outcome.clip is not None:
            clips[scene][task] = outcome.clip
    episodes = [r for outcome in outcomes for r in outcome.results]
    return Evaluation(episodes, dropped, [scene.name for scene in scenes], wall_s, clips)


def build_actors(cfg: EvaluateConfig) -> dict[str, Actor]:
    actors: dict[str, Actor] = {}
    for entry in cfg.policies:
        name, _, path = entry.partition("=")
        policy = ImagePolicy.load(path, action_dim=4, image_size=cfg.env.resolution, device=cfg.device)
        actors[name] = PolicyActor(policy, deterministic=cfg.deterministic)
    if cfg.expert_actor:
        actors["scripted expert"] = ExpertActor()
    if cfg.random_actor:
        actors["random"] = RandomActor()
    if not actors:
        raise ConfigError("nothing to evaluate: give policies=name=path,... or set random_actor/expert_actor")
    return actors


def load_evaluation(path: str | Path) -> Evaluation:
    """The evaluation written beside a report (``<report>.json``)."""
    data = json.loads(Path(path).read_text())
    return Evaluation([EpisodeResult(**r) for r in data["episodes"]], data["dropped"], data["scenes"], data["wall_s"])
