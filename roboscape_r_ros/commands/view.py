"""`roboscape-r view`: a dataset, a world-model run or a policy evaluation as a recording to look at.

    roboscape-r view path=outputs/datasets/demo                 # episodes: camera, action, state, done
    roboscape-r view path=outputs/runs/world_model              # real | dream | goal, held-action rollouts
    roboscape-r view path=outputs/eval/report.md                # each actor's episodes, success, clips

writes a rosbag2 folder (outputs/views/<name>/ with <name>.mcap and metadata.yaml): open the .mcap in
Foxglove, or replay it with `ros2 bag play outputs/views/<name>` into RViz. Episodes follow one another
on the recording's clock (from t = 1 s, 1 s apart); everything of one episode shares its time stamps,
so image panels of real, dreamed and goal frames play side by side.

Topics
- dataset: /dataset/image (Image, frame_id = the camera), /dataset/action and /dataset/state
  (JointState, one name per dimension), /dataset/done_label (Float32, labelled episodes only),
  /dataset/episode (String: index, task, kind, success) at each episode's first frame.
- world-model run (computed here from the checkpoint, on up to `examples` held-out episodes, at the
  world model's step rate): /wm/real, /wm/dream (the first context frames, then open loop from the
  recorded actions), /wm/goal (the goal model from the first frame and the instruction, if trained),
  /wm/action (JointState), /wm/dream_done (Float32: the done head on dreamed frames), /wm/episode; then
  the controllability rollouts of evaluate-wm (rollout.held_action_clips): one image topic per held
  action, /wm/held/<action>, with /wm/held/context naming each context.
- evaluation (`roboscape-r evaluate`'s <report>.json and its per-scene GIFs): /evaluation/episode
  (String: the episode's result as JSON), /evaluation/<actor>/success (Bool) and /steps (Float32) per
  episode, the actors of one episode at one time; /evaluation/<scene>/clips (Image: the report's GIF).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.data.lerobot import INFO_PATH
from roboscape_r_ros.data.reader import EpisodeDataset, open_run_dataset
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.imagination.env import MODEL_FILE, SPLIT_FILE, check_world_model, resolve_world_model
from roboscape_r_ros.view.recording import Recording
from roboscape_r_ros.world_model.data import skip_actions
from roboscape_r_ros.world_model.model import WorldModel
from roboscape_r_ros.world_model.rollout import gather, held_action_clips, rollout, spread, world_frames
from roboscape_r_ros.world_model.train import saved_step

START_NS, GAP_NS = 10**9, 10**9


class ViewError(RoboscapeError):
    """A path that is no dataset, world-model run or evaluation report."""


@dataclass
class ViewConfig:
    path: str = option(
        "", help="a dataset folder, a train-wm run folder, or an evaluation report (<report>.md or .json)"
    )
    out: str = option("", help="rosbag2 folder to write (default: outputs/views/<name of path>)")
    overwrite: bool = option(False, help="replace an earlier recording at `out`")
    episodes: int = option(20, help="dataset: the first N episodes (0: all)")
    camera: str = option("", help="dataset: camera feature to show when the dataset has several")
    examples: int = option(4, help="world-model run: held-out episodes shown (evenly spread)")
    sheet_steps: int = option(8, help="world-model run: dreamed steps per held-action rollout")
    sheet_contexts: int = option(2, help="world-model run: real contexts of the held-action rollouts")
    threads: int = option(1, help="torch CPU threads for the world model (0: torch's default)")


@dataclass
class ViewSummary:
    kind: str  # dataset, world-model run or evaluation
    source: Path
    recording: Path
    mcap: Path
    counts: dict[str, int]
    types: dict[str, str]
    seconds: float  # length of the recording's clock
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        size = self.mcap.stat().st_size / 2**20
        lines = [
            f"view      {self.kind} {self.source}",
            f"wrote     {self.mcap} ({size:.2f} MiB, {sum(self.counts.values())} messages, {self.seconds:.1f} s)",
            *(f"  {topic:<32} {n:>6} x {self.types[topic]}" for topic, n in sorted(self.counts.items())),
            *self.notes,
            f"open      the .mcap in Foxglove, or: ros2 bag play {self.recording}",
        ]
        return "\n".join(lines)


def topic_name(label: str) -> str:
    """A ROS name segment for a label: '+dx' -> 'plus_dx', 'close gripper' -> 'close_gripper',
    'in-domain' -> 'in_domain' (a leading sign is spelled out: it tells held actions apart)."""
    name = {"+": "plus_", "-": "minus_"}.get(label[:1], label[:1]) + label[1:]
    name = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower()
    return name if name[:1].isalpha() else f"n_{name}"


def kind_of(path: Path) -> str:
    if path.is_dir() and (path / INFO_PATH).is_file():
        return "dataset"
    if path.is_dir() and (path / MODEL_FILE).is_file() and (path / SPLIT_FILE).is_file():
        return "world-model run"
    if report_json(path) is not None:
        return "evaluation"
    raise ViewError(
        f"{path}: not a dataset ({INFO_PATH}), a world-model run ({MODEL_FILE} + {SPLIT_FILE}) "
        "or an evaluation report (<report>.json beside <report>.md)"
    )


def report_json(path: Path) -> Path | None:
    candidates = [path / "report.json"] if path.is_dir() else [path.with_suffix(".json")]
    return next((c for c in candidates if c.is_file() and c.with_suffix(".md").is_file()), None)


def run_view(cfg: ViewConfig) -> ViewSummary:
    if not cfg.path:
        raise ConfigError("no path given (path=<dataset folder | train-wm run folder | evaluation report>)")
    source = Path(cfg.path)
    if not source.exists():
        raise ViewError(f"{source}: no such file or folder")
    kind = kind_of(source)
    out = Path(cfg.out) if cfg.out else Path("outputs/views") / (source.stem if source.is_file() else source.name)
    notes: list[str] = []
    with Recording(out, cfg.overwrite) as rec:
        if kind == "dataset":
            notes = record_dataset(rec, EpisodeDataset.open(source, cfg.camera), cfg.episodes)
        elif kind == "world-model run":
            notes = record_world_model(rec, source, cfg)
        else:
            report = report_json(source)
            assert report is not None, "kind_of found the report"
            notes = record_evaluation(rec, report)
    seconds = (rec.end_ns - START_NS) / 1e9
    return ViewSummary(kind, source, rec.path, rec.mcap, dict(rec.counts), rec.types, seconds, notes)


def record_dataset(rec: Recording, dataset: EpisodeDataset, limit: int) -> list[str]:
    period = 1e9 / dataset.fps
    shown = dataset.num_episodes if limit <= 0 else min(limit, dataset.num_episodes)
    t = START_NS
    for e in range(shown):
        meta, episode = dataset.episodes[e], dataset.episode(e)
        outcome = ("success" if meta.success else "failure") if meta.labelled else "success unknown"
        rec.text("/dataset/episode", t, f"episode {e}: {meta.task} ({meta.kind}, {outcome}): {meta.instruction}")
        for i in range(meta.length):
            stamp = t + round(i * period)
            rec.image("/dataset/image", stamp, episode.frames[i], dataset.camera)
            rec.named("/dataset/action", stamp, dataset.action_names, episode.actions[i])
            if dataset.state_names:
                rec.named("/dataset/state", stamp, dataset.state_names, episode.states[i])
            if meta.labelled:
                rec.scalar("/dataset/done_label", stamp, episode.done[i])
        t += round(meta.length * period) + GAP_NS
    return [f"episodes  {shown} of {dataset.num_episodes} at {dataset.fps} fps (episodes=0 shows all)"]


def record_world_model(rec: Recording, folder: Path, cfg: ViewConfig) -> list[str]:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    run = resolve_world_model(folder)  # checks split.json's held-out list
    split = run.split
    if split is None or not split.get("dataset"):  # (kind_of saw split.json)
        raise ViewError(f"{folder / SPLIT_FILE}: names no dataset")
    model = WorldModel.from_checkpoint(run.checkpoint, "cpu").eval()
    dataset = open_run_dataset(split["dataset"], split)
    check_world_model(model, dataset, f"world model {folder / MODEL_FILE}")
    arrays = dataset.load_arrays()
    k, c = model.cfg.frame_skip, model.cfg.context_length - 1
    period = 1e9 * k / dataset.fps
    held_out = [int(e) for e in split["held_out"]]
    chosen = spread([e for e in held_out if world_frames(int(arrays.lengths[e]), k) > c], cfg.examples)
    goal_trained = saved_step(folder, "goal") > 0
    t = START_NS
    for e in chosen:
        meta = dataset.episodes[e]
        real = arrays.frames[arrays.starts[e] : arrays.starts[e] + arrays.lengths[e]][::k]
        n = len(real)
        w = gather(arrays, np.array([e]), np.array([0]), c, n - c, k)
        with torch.no_grad():
            dreamed, done = rollout(model, w.context, w.context_actions, w.actions)
            goal = model.imagine_goal(real[:1], [meta.instruction], max_steps=n + 4) if goal_trained else None
        dream = np.concatenate([w.context[0], dreamed[0]])
        actions = skip_actions(arrays.actions[arrays.starts[e] : arrays.starts[e] + (n - 1) * k], k)
        rec.text("/wm/episode", t, f"held-out episode {e}: {meta.task} ({meta.kind}); dream after {c} real frames")
        for i in range(n):
            stamp = t + round(i * period)
            rec.image("/wm/real", stamp, real[i], dataset.camera)
            rec.image("/wm/dream", stamp, dream[i], dataset.camera)
            if i < n - 1:
                rec.named("/wm/action", stamp, dataset.action_names, actions[i])
            if i >= c:
                rec.scalar("/wm/dream_done", stamp, done[0, i - c])
        length = n
        if goal is not None:
            clip = goal.frames[0, : int(goal.goal_step[0]) + 1].cpu().numpy()
            for i, frame in enumerate(clip):
                rec.image("/wm/goal", t + round(i * period), frame, dataset.camera)
            length = max(n, len(clip))
        t += round(length * period) + GAP_NS

    sheet = held_action_clips(model, dataset, held_out, cfg.sheet_steps, cfg.sheet_contexts)
    for ci, (e, start) in enumerate(sheet.picks):
        rec.text("/wm/held/context", t, f"episode {e} ({dataset.episodes[e].task}) from recorded frame {start}")
        for j, label in enumerate(sheet.labels):
            for step, frame in enumerate(sheet.clips[ci, j]):
                rec.image(f"/wm/held/{topic_name(label)}", t + round(step * period), frame, dataset.camera)
        t += round(sheet.clips.shape[2] * period) + GAP_NS
    notes = [f"episodes  held-out {', '.join(map(str, chosen)) or 'none long enough'} of {dataset.root}"]
    notes.append(f"held      {', '.join(sheet.labels)} from {len(sheet.picks)} contexts, {cfg.sheet_steps} steps")
    if not goal_trained:
        notes.append("goal      the run's goal stage has not trained: no /wm/goal")
    return notes


def record_evaluation(rec: Recording, path: Path) -> list[str]:
    from roboscape_r_ros.rl.evaluate import load_evaluation  # imports MuJoCo: only for an evaluation

    try:
        evaluation = load_evaluation(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ViewError(f"{path}: not an evaluation written by `roboscape-r evaluate` ({err})") from None
    slots: dict[tuple, int] = {}
    for r in evaluation.episodes:  # one slot per episode; its actors share it
        slot = slots.setdefault((r.scene, r.task, r.seed, r.episode), len(slots))
        stamp = START_NS + slot * GAP_NS
        rec.text("/evaluation/episode", stamp, json.dumps(r.__dict__))
        rec.flag(f"/evaluation/{topic_name(r.actor)}/success", stamp, r.success)
        rec.scalar(f"/evaluation/{topic_name(r.actor)}/steps", stamp, r.steps)
    clips = 0
    for scene in evaluation.scenes:
        gif = path.with_name(f"{path.stem}_{scene}.gif")
        if not gif.is_file():
            continue
        with Image.open(gif) as image:
            for i, frame in enumerate(ImageSequence.Iterator(image)):
                rec.image(
                    f"/evaluation/{topic_name(scene)}/clips",
                    START_NS + i * 10**9 // 8,
                    np.asarray(frame.convert("RGB")),
                )
        clips += 1
    return [f"episodes  {len(slots)} (x actors), scenes {', '.join(evaluation.scenes)}; {clips} clip GIFs"]
