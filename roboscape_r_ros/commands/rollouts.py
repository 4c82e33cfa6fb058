"""`roboscape-r rollouts`: a trained policy's own episodes in the physics sim, appended to a dataset.

    roboscape-r rollouts policy=outputs/policies/demo/imagination/imagination.safetensors \
        base=outputs/datasets/demo output=outputs/datasets/demo_round1

The new dataset at ``output`` holds first every episode of ``base``, unchanged and in order (episode
indices 0..N-1 and their frame counts stay, so a world model's split.json over ``base`` stays valid),
then ``episodes_per_task`` episodes per task of the policy in the in-domain scene, of kind "policy",
recorded as collect records its episodes: frame t is the observation before action t, the episode runs
``steps_after_success`` control steps past Meta-World's first success flag, done labels from it. That
is what the world model and its done head are fine-tuned on (failures included).

Episodes run as evaluate runs them (rl/evaluate.py: its actors, goal frames, expert-checked reset
seeds, workers). Their reset seeds come from the evaluation seed ``seed`` (default 10000): evaluate's
episodes come from seeds 0, 1, 2..., each episode's reset seeds from a stream keyed by (seed, task,
episode), so the rollouts never replay an evaluation episode. By default the policy samples its
Gaussian (``deterministic=false``), so the rollouts cover the states around its mean behaviour.
info.json's ``rollouts`` entry says where the policy's episodes start, and their reset seeds.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.data.lerobot import DatasetSummary, DatasetWriter
from roboscape_r_ros.data.reader import EpisodeDataset
from roboscape_r_ros.envs.metaworld_env import ACTION_NAMES, STATE_NAMES, EnvConfig
from roboscape_r_ros.rl.actors import Actor
from roboscape_r_ros.rl.evaluate import (
    EpisodeOutcome,
    EvaluateConfig,
    Recording,
    build_actors,
    complete,
    episode_specs,
    gather,
    open_runner,
    progress_bar,
)

KIND = "policy"
POLICY_NAME = "policy"  # the actor's name in the EpisodeRunner


@dataclass
class RolloutsConfig:
    policy: str = option(
        "outputs/policies/demo/bc/bc.safetensors",
        help="trained policy (.safetensors, as train-bc, train-sim-ppo and train-imagination write them)",
    )
    base: str = option(
        "outputs/datasets/demo",
        help="dataset whose episodes come first, unchanged and in order (the world model's data: the indices of "
        "its split.json stay valid)",
    )
    output: str = option("outputs/datasets/rollouts", help="new dataset folder: base's episodes, then the policy's")
    overwrite: bool = option(False, help="replace an existing dataset at output")
    env: EnvConfig = option(
        EnvConfig(), help="tasks, resolution, camera and step cap; its scene is the in-domain one the policy runs in"
    )
    episodes_per_task: int = option(8, help="policy episodes recorded per task", low=1)
    seed: int = option(
        10_000,
        help="evaluation seed the reset seeds are drawn from; evaluate uses 0, 1, 2..., so 10000 keeps the rollouts "
        "off the evaluation's episodes",
    )
    deterministic: bool = option(
        False, help="act with the mean action; false samples the policy, so rollouts cover states around it"
    )
    goal: Literal["expert", "demo"] = option(
        "expert", help="goal frames, as evaluate gives them: the expert's end frame or a demo's last"
    )
    goal_dataset: str = option("", help="dataset of demo goal frames (goal=demo; empty: base)")
    expert_draws: int = option(8, help="reset seeds tried per episode until the scripted expert solves one", low=1)
    steps_after_success: int = option(
        5, help="control steps recorded after the first success, as collect records", low=1
    )
    device: str = option("cpu", help="torch device of the policy")
    workers: int = option(
        0,
        help="processes running episodes side by side (0: one per CPU core; 1: in this process); the episodes "
        "do not depend on it",
        low=0,
    )

    def evaluation(self) -> EvaluateConfig:
        """The evaluate config that runs these episodes: the policy alone, in-domain, one seed."""
        return EvaluateConfig(
            policies=[f"{POLICY_NAME}={self.policy}"],
            random_actor=False,
            env=self.env,
            seeds=[self.seed],
            episodes_per_seed=self.episodes_per_task,
            expert_draws=self.expert_draws,
            ood_scenes=[],
            goal=self.goal,
            goal_dataset=self.goal_dataset or self.base,
            deterministic=self.deterministic,
            device=self.device,
            workers=self.workers,
        )


@dataclass(frozen=True)
class RolloutsSummary:
    """What rollouts wrote; printed by the CLI."""

    dataset: DatasetSummary
    base_episodes: int
    episodes: int  # the policy's
    successes: int
    frames: int
    dropped: int  # reset seeds the scripted expert could not solve (drawn again)
    wall_s: float

    def __str__(self) -> str:
        return "\n".join(
            [
                f"rollouts  {self.episodes} policy episodes after the base's {self.base_episodes}: "
                f"{self.successes} successes, {self.frames} frames, {self.dropped} reset seeds dropped, "
                f"{self.wall_s:.0f} s",
                str(self.dataset),
            ]
        )


def check_base(base: EpisodeDataset, env: EnvConfig) -> None:
    """The policy's episodes must fit base's schema: its frames, camera, actions and states, stored losslessly."""

    def fail(message: str) -> None:
        raise ConfigError(f"base {base.root}: {message}")

    if not base.layout.native or base.command_names:
        fail("not a dataset of Meta-World episodes as collect writes them (no labels, or recorded commands)")
    if base.video:
        fail("frames stored as video: copying them would re-encode them (lossy); collect with video=false")
    size = env.resolution
    if base.image_shape != (size, size, 3):
        fail(f"frames are {base.image_shape[0]}x{base.image_shape[1]}, env.resolution is {size}")
    if base.camera != env.camera:
        fail(f"frames from camera '{base.camera}', env.camera is '{env.camera}'")
    if (list(base.action_names), list(base.state_names)) != (list(ACTION_NAMES), list(STATE_NAMES)):
        fail(f"actions {base.action_names} / states {base.state_names} are not Meta-World's")


def run_rollouts(cfg: RolloutsConfig, progress: bool = True) -> RolloutsSummary:
    """Write base's episodes, then the policy's, to a new dataset at ``cfg.output``."""
    start = time.perf_counter()
    base = EpisodeDataset.open(cfg.base)
    check_base(base, cfg.env)
    if Path(cfg.output).resolve() == base.root.resolve():
        raise ConfigError(f"output {cfg.output} is the base dataset: write the rollouts to a new folder")
    evaluation = cfg.evaluation()
    actors = build_actors(evaluation)  # a policy that does not load fails before any episode
    writer = DatasetWriter(
        Path(cfg.output),
        fps=base.fps,
        camera=base.camera,
        image_shape=base.image_shape,
        action_names=list(base.action_names),
        state_names=list(base.state_names),
        robot_type=base.info.get("robot_type", "sawyer"),
        overwrite=cfg.overwrite,
    )
    with writer:
        for index in range(base.num_episodes):
            writer.add_episode(base.episode(index))
        outcomes = run_episodes(evaluation, actors, Recording(KIND, cfg.steps_after_success), progress)
        kept = [outcome for outcome in outcomes if outcome.results]
        episodes = [episode for outcome in kept for episode in outcome.recorded]
        for episode in episodes:
            writer.add_episode(episode)
        summary = writer.finalize(
            {
                "rollouts": {
                    "base": str(base.root.resolve()),
                    "base_episodes": base.num_episodes,
                    "base_frames": base.num_frames,
                    "policy": str(Path(cfg.policy).resolve()),
                    "deterministic": cfg.deterministic,
                    "goal": cfg.goal,
                    "seed": cfg.seed,
                    "reset_seeds": [outcome.results[0].reset_seed for outcome in kept],
                }
            }
        )
    return RolloutsSummary(
        dataset=summary,
        base_episodes=base.num_episodes,
        episodes=len(episodes),
        successes=sum(episode.success for episode in episodes),
        frames=sum(len(episode.actions) for episode in episodes),
        dropped=sum(outcome.dropped for outcome in outcomes),
        wall_s=time.perf_counter() - start,
    )


def run_episodes(
    cfg: EvaluateConfig, actors: dict[str, Actor], recording: Recording, progress: bool
) -> list[EpisodeOutcome]:
    """Every episode of ``cfg`` with its recording, in spec order (no report clips)."""
    specs = [dataclasses.replace(spec, clip=False) for spec in episode_specs(cfg)]
    outcomes: list[EpisodeOutcome | None] = [None] * len(specs)
    runner = open_runner(cfg, actors, len(specs), recording)
    try:
        with progress_bar("rollouts", runner, len(specs), progress) as bar:
            gather(runner.map(specs), outcomes, bar)
    finally:
        runner.close()
    return complete(outcomes)
