"""The endogenous reward of one stream of frames (dreamed, simulated or real): the core of reward_publisher.

    rewards = RewardSession(RewardConfig(), wm)          # wm: for the done head and the goal model
    rewards.imagine_goal(first_frame, "push the puck")   # or rewards.set_goal(goal_image)
    terms = rewards(frame)                               # done probability from the done head
    terms = rewards(frame, done_probability=0.93)        # ... or the dreamer's own

imagination.reward.EndogenousReward with one row: r = scale * ((1 - D(frame, goal)) - offset) +
bonus * [p >= threshold]. On real or simulated frames p comes from the world model's done head on
the frame alone (the first position of a window, a case the head is trained on: frames before it
would need the actions between them); a dreamer passes the probability it predicted.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from roboscape_r_ros.imagination.goals import load_goal_image
from roboscape_r_ros.imagination.reward import EndogenousReward, RewardConfig
from roboscape_r_ros.parameters import inherited, parameter, threads_parameter
from roboscape_r_ros.perception.distance import PerceptionConfig, PerceptualBackend
from roboscape_r_ros.runtime.sessions.dream_session import DreamError, check_frame
from roboscape_r_ros.world_model.model import WorldModel


@dataclass(frozen=True)
class RewardPublisherParams:
    world_model: str = parameter(
        "",
        "world-model run folder or .safetensors: the done head and the goal model (may stay empty with "
        "goal_source topic/file and done_source topic)",
    )
    device: str = parameter("cpu", "torch device of the world model and the perceptual distance")
    threads: int = threads_parameter()
    goal_source: Literal["topic", "instruction", "file"] = parameter("instruction", "where the goal frame comes from")
    goal_image_file: str = parameter("", "goal_source=file: an 8-bit RGB PNG/JPEG of the frames' size")
    goal_max_steps: int = parameter(50, "goal_source=instruction: imagined steps at most", low=1, high=10_000)
    done_source: Literal["model", "topic"] = parameter(
        "model", "done probability: the world model's done head on each frame, or the dreamer's done topic"
    )
    perception: PerceptualBackend = inherited(PerceptionConfig, "backend")
    perception_resolution: int = inherited(PerceptionConfig, "resolution", low=0, high=1024)
    lpips_dir: str = inherited(PerceptionConfig, "lpips_dir")
    done_bonus: float = inherited(RewardConfig, "done_bonus", low=0.0, high=1e6)
    done_threshold: float = inherited(RewardConfig, "done_threshold", low=0.01, high=1.0)
    alignment_offset: float = inherited(RewardConfig, "alignment_offset", low=-10.0, high=10.0)
    alignment_scale: float = inherited(RewardConfig, "alignment_scale", low=0.0, high=1e6)
    marker_frame_id: str = parameter("world", "frame of reward/marker")
    warning_period_s: float = parameter(
        5.0, "at most one warning per kind of problem in this period (s)", low=0.0, high=3600.0
    )

    def reward_config(self) -> RewardConfig:
        perception = PerceptionConfig(
            backend=self.perception, resolution=self.perception_resolution, lpips_dir=self.lpips_dir, device=self.device
        )
        return RewardConfig(
            perception,
            done_bonus=self.done_bonus,
            done_threshold=self.done_threshold,
            alignment_offset=self.alignment_offset,
            alignment_scale=self.alignment_scale,
        )


@dataclass(frozen=True)
class StepReward:
    reward: float
    alignment: float  # 1 - D
    bonus: float
    distance: float  # D
    done_probability: float
    backend: str  # the perceptual distance that gave D


class RewardSession:
    IMAGINED_GOALS_KEPT = 256

    def __init__(self, cfg: RewardConfig, wm: WorldModel | None = None, device: str = "cpu", distance=None):
        self.cfg, self.wm = cfg, wm
        self.reward = EndogenousReward(cfg, num_envs=1, device=device, distance=distance)
        self.goal: np.ndarray | None = None  # uint8 [S,S,3]
        # (instruction, first frame's digest, max_steps) -> (goal, fired), most recently used last
        self.imagined: OrderedDict[tuple[str, bytes, int], tuple[np.ndarray, bool]] = OrderedDict()

    def set_goal(self, image: np.ndarray | str | Path) -> np.ndarray:
        """Goal frame uint8 [S,S,3] or an image file (S: the world model's size; without one, any square size)."""
        size = self.wm.cfg.image_size if self.wm is not None else None
        goal = np.array(load_goal_image(image, size))  # a writable copy; GoalImageError names the expected shape
        self.reward.set_goals(None, goal[None])
        self.goal = goal
        return goal

    def imagine_goal(self, first_frame: np.ndarray, instruction: str, max_steps: int = 50) -> tuple[np.ndarray, bool]:
        """The goal model imagines ``instruction`` from ``first_frame``: (goal frame, did done fire).

        A first frame met before with the same instruction gets the goal imagined then, as the
        imagination env keeps one goal per context episode: a dreamer drawing its episodes from 23
        held-out contexts costs 23 goal imaginations (0.5 s each on a CPU core), not one per episode."""
        model = self._model("imagine a goal from an instruction")
        frame = check_frame(model, first_frame, "first frame")
        key = (instruction, hashlib.blake2b(frame.tobytes(), digest_size=16).digest(), max_steps)
        if key not in self.imagined:
            imagined = model.imagine_goal(frame[None], [instruction], max_steps)
            self.imagined[key] = imagined.goal[0].cpu().numpy(), bool(imagined.fired[0])
            if len(self.imagined) > self.IMAGINED_GOALS_KEPT:
                self.imagined.popitem(last=False)
        self.imagined.move_to_end(key)
        goal, fired = self.imagined[key]
        return self.set_goal(goal), fired

    def done_probability(self, frame: np.ndarray) -> float:
        model = self._model("compute the done probability")
        frames = check_frame(model, frame)[None, None]  # [1,1,H,W,3]
        return float(model.done_probability(frames, np.zeros((1, 0, model.cfg.action_dim), np.float32))[0, 0])

    def __call__(self, frame: np.ndarray, done_probability: float | None = None) -> StepReward:
        if self.goal is None:
            raise DreamError("no goal yet: set one (goal image) or imagine one (instruction)")
        if frame.dtype != np.uint8 or frame.shape != self.goal.shape:
            raise DreamError(f"frame is {frame.dtype} {list(frame.shape)}; the goal is uint8 {list(self.goal.shape)}")
        p = self.done_probability(frame) if done_probability is None else float(done_probability)
        terms = self.reward(np.array(frame[None]), np.array([p], np.float32))  # [1,H,W,3] writable, [1]
        return StepReward(
            float(terms.reward[0]),
            float(terms.alignment[0]),
            float(terms.bonus[0]),
            float(terms.distance[0]),
            p,
            terms.backend,
        )

    def _model(self, why: str) -> WorldModel:
        if self.wm is None:
            raise DreamError(f"a world model is needed to {why} (set world_model)")
        return self.wm
