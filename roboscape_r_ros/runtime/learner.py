"""Learning over the topic loop: transitions from policy_controller, rewards from the ``reward`` topic, PPO.

policy_controller (learning mode) hands every decision of the sampling ``learned`` backend to
``Learner.record`` with the stamp of the observation it answers, and every roboscape_r_ros/Reward
to ``Learner.reward``. Every ``num_steps`` settled transitions, ``take_rollout`` builds a
``rl.ppo.RolloutBuffer`` and ``update`` runs ``rl.ppo.ppo_update`` on it, the same update as
offline PPO, then saves the policy atomically as safetensors. Nothing here knows ROS.

Matching a reward to a transition (``reward`` and ``record`` take plain stamps, in ns):
  - a Reward is computed on one frame (its stamp); that frame is what the action answering the
    frame *before* it led to, so it pays the latest recorded transition stamped earlier, provided
    that transition has no reward yet and belongs to the same episode (an empty id matches any);
  - anything else is unmatched (counted): e.g. the reward on an episode's first frame, which no
    action led to, or on a frame after one the controller did not answer;
  - a frame answered again with the same stamp (after an episode change) replaces its transition.

Settling transitions in order (rewards arrive in stamp order, so a transition without a reward
while a later one has one will never get it):
  - done and not truncated: the episode terminated here; no bootstrap;
  - truncated: it ended at the step cap; the reward gets gamma * V(next frame) (the value of the
    next recorded frame of the episode, or of its own frame when the controller never saw one);
  - its next transition was rewarded: the episode goes on (GAE runs through);
  - its next transition will never be rewarded, or belongs to another episode: the chain is cut
    here like a truncation (bootstrap with that next frame's value, or its own across episodes);
    the unrewarded transition is dropped (counted).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from roboscape_r_ros.config import load_config
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.rl.policy import ImagePolicy
from roboscape_r_ros.rl.ppo import PPOConfig, RewardScaler, RolloutBuffer, make_optimizer, ppo_update
from roboscape_r_ros.runtime.inference.learned_policy import Decision

if TYPE_CHECKING:
    from roboscape_r_ros.runtime.gates.controller import LearningParams

CHECKPOINT = "policy.safetensors"
UPDATES_LOG = "updates.jsonl"


class LearnerError(RoboscapeError):
    """Learning cannot run as configured (a chunked policy, an unusable output folder)."""


@dataclass
class _Step:
    stamp_ns: int
    episode_id: str
    decision: Decision
    reward: tuple[float, bool, bool] | None = None  # (reward, done, truncated)


@dataclass(frozen=True)
class _Transition:
    decision: Decision
    reward: float  # raw reward
    ended: bool  # no GAE across it: terminated, truncated or cut
    bootstrap: float | None  # V(next frame) added as gamma * bootstrap (truncated or cut), else None
    next_value: float  # V(next frame) when the episode goes on (used for a rollout's last row)


def _same_episode(a: str, b: str) -> bool:
    return not a or not b or a == b


class Learner:
    """Collects transitions and rewards from the topic loop; PPO on ``cfg.num_steps`` of them at a time."""

    def __init__(self, policy: ImagePolicy, cfg: PPOConfig, output: str | Path) -> None:
        if policy.cfg.chunk != 1:
            raise LearnerError(
                f"learning mode trains one action per decision; this policy emits chunks of {policy.cfg.chunk}"
            )
        self.policy, self.cfg = policy, cfg
        self.output = Path(output)
        try:
            self.output.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LearnerError(f"learning output {self.output}: cannot create the folder ({err.strerror})") from None
        self.checkpoint = self.output / CHECKPOINT
        self.optimizer = make_optimizer(policy, cfg)
        self.scaler = RewardScaler(1, cfg.gamma, policy.device)
        self.steps: list[_Step] = []  # recorded, not settled yet; oldest first
        self.settled: list[_Transition] = []  # in order, waiting for a rollout
        self.next_done = True  # whether the transition before the next rollout ended its episode
        self.counts: Counter[str] = Counter()  # recorded, rewarded, unmatched, dropped, updates
        self.rollout_stats: dict[str, float] = {}  # raw reward mean and episode ends of the last rollout taken

    # -- input ----------------------------------------------------------------------------------
    def record(self, stamp_ns: int, episode_id: str, decision: Decision) -> None:
        """The policy decided ``decision`` on the frame stamped ``stamp_ns``."""
        if self.steps and self.steps[-1].stamp_ns == stamp_ns:
            self.steps[-1] = _Step(stamp_ns, episode_id, decision)  # the frame answered again
            return
        self.steps.append(_Step(stamp_ns, episode_id, decision))
        self.counts["recorded"] += 1
        self._settle()

    def reward(self, stamp_ns: int, episode_id: str, reward: float, done: bool, truncated: bool) -> bool:
        """A reward computed on the frame stamped ``stamp_ns``; False when it pays no transition."""
        step = next((s for s in reversed(self.steps) if s.stamp_ns < stamp_ns), None)
        if (
            step is None
            or step.reward is not None
            or not _same_episode(step.episode_id, episode_id)
            or not np.isfinite(reward)
        ):
            self.counts["unmatched"] += 1
            return False
        step.reward = (float(reward), bool(done), bool(truncated))
        self.counts["rewarded"] += 1
        self._settle()
        return True

    def _dead(self, index: int) -> bool:
        """The step at ``index`` will never get a reward: a later one has one, or a later episode began."""
        step = self.steps[index]
        later = self.steps[index + 1 :]
        return step.reward is None and any(
            s.reward is not None or not _same_episode(s.episode_id, step.episode_id) for s in later
        )

    def _settle(self) -> None:
        while self.steps:
            first = self.steps[0]
            if first.reward is None:
                if not self._dead(0):
                    return  # its reward may still come
                self.steps.pop(0)
                self.counts["dropped"] += 1
                continue
            reward, done, truncated = first.reward
            own = first.decision.value
            if done and not truncated:
                transition = _Transition(first.decision, reward, True, None, 0.0)
            elif len(self.steps) < 2:
                return  # whether the episode goes on shows with the next frame
            else:
                following = self.steps[1]
                next_value = following.decision.value if _same_episode(first.episode_id, following.episode_id) else own
                if truncated or not _same_episode(first.episode_id, following.episode_id) or self._dead(1):
                    transition = _Transition(first.decision, reward, True, next_value, 0.0)
                elif following.reward is not None:
                    transition = _Transition(first.decision, reward, False, None, next_value)
                else:
                    return  # the next transition's reward may still come
            self.settled.append(transition)
            self.steps.pop(0)

    # -- PPO ------------------------------------------------------------------------------------
    def ready(self) -> bool:
        return len(self.settled) >= self.cfg.num_steps

    def take_rollout(self) -> RolloutBuffer:
        """The oldest ``num_steps`` settled transitions as a rollout of one env (rewards normalised
        and bootstrapped as in train_ppo). Call only when ``ready()``."""
        T = self.cfg.num_steps
        rows, self.settled = self.settled[:T], self.settled[T:]
        image_shape = rows[0].decision.image.shape
        buffer = RolloutBuffer(T, 1, image_shape, 1, self.policy.cfg.action_dim, self.policy.device)
        for t, row in enumerate(rows):
            decision = row.decision
            buffer.images[t, 0] = torch.from_numpy(np.ascontiguousarray(decision.image))
            buffer.goals[t, 0] = torch.from_numpy(np.ascontiguousarray(decision.goal))
            buffer.actions[t, 0] = torch.from_numpy(decision.action)  # [K=1,A]
            buffer.logprobs[t, 0], buffer.values[t, 0] = decision.logprob, decision.value
            buffer.dones[t, 0] = float(self.next_done)
            reward = torch.tensor([row.reward])
            if self.cfg.normalize_reward:
                reward = self.scaler(reward, torch.tensor([row.ended]))
            if row.bootstrap is not None:
                reward = reward + self.cfg.gamma * row.bootstrap
            buffer.rewards[t, 0] = reward[0]
            self.next_done = row.ended
        buffer.next_value[0], buffer.next_done[0] = rows[-1].next_value, float(self.next_done)
        self.rollout_stats = {
            "rollout/reward": float(np.mean([row.reward for row in rows])),
            "rollout/episode_ends": float(sum(row.ended for row in rows)),
        }
        return buffer

    def update(self, buffer: RolloutBuffer) -> dict[str, float]:
        """One PPO update (rl.ppo.ppo_update) on ``buffer``, then the checkpoint and a line of
        updates.jsonl; the first ``value_warmup_iterations`` updates train the critic only."""
        start = time.perf_counter()
        value_only = self.counts["updates"] < self.cfg.value_warmup_iterations
        stats = ppo_update(self.policy, self.optimizer, buffer, self.cfg, value_only=value_only)
        self.counts["updates"] += 1
        self.policy.save(self.checkpoint)  # temporary file, then rename: never a half-written checkpoint
        stats = {
            "update": float(self.counts["updates"]),
            "transitions": float(buffer.size),
            **self.rollout_stats,
            "update_s": time.perf_counter() - start,
            **stats,
        }
        with open(self.output / UPDATES_LOG, "a") as log:
            log.write(json.dumps(stats) + "\n")
        return stats


class BackgroundUpdates:
    """Runs ``Learner.update`` in one worker thread, so that its caller keeps serving e-stop and
    watchdog meanwhile; the caller holds the arm while ``busy``."""

    def __init__(self, learner: Learner) -> None:
        self.learner = learner
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ppo")
        self.job: Future | None = None

    @classmethod
    def for_controller(cls, backend, learning: LearningParams) -> BackgroundUpdates:
        """policy_controller's learning mode over its ``learned`` backend (sampling), with its
        ``learning.*`` parameters; LearnerError for any other backend."""
        if backend.name != "learned":
            raise LearnerError(f"learning mode trains the learned backend (backend:=learned), not '{backend.name}'")
        cfg = load_config(PPOConfig, "ppo", None, [*learning.ppo.split(), f"num_steps={learning.rollout_steps}"])
        return cls(Learner(backend.policy, cfg, learning.output))

    def describe(self) -> str:
        return (
            f"learning mode: sampled actions, a PPO update every {self.learner.cfg.num_steps} transitions, "
            f"policy saved to {self.learner.checkpoint}"
        )

    def start(self) -> str | None:
        """Start an update when a rollout is complete: what to log (the arm holds meanwhile), else None."""
        updates_done = self.learner.counts["updates"]
        size = self.start_if_ready()
        if size is None:
            return None
        return (
            f"learning: PPO update {updates_done + 1} on {size} transitions; holding the arm (no commands) "
            "until it is done"
        )

    def finish(self) -> tuple[bool, str] | None:
        """(succeeded, what to log) once an update finished, else None."""
        stats = self.finished()
        if stats is None:
            return None
        if isinstance(stats, Exception):
            return False, (
                f"learning: the PPO update failed ({type(stats).__name__}: {stats}); acting on with the policy as it is"
            )
        counts = self.learner.counts
        return True, (
            f"learning: update {stats['update']:.0f} done in {stats['update_s']:.2f} s (mean reward "
            f"{stats['rollout/reward']:.3g}, policy loss {stats['loss/policy']:.3g}, value loss "
            f"{stats['loss/value']:.3g}); saved {self.learner.checkpoint}; {counts['unmatched']} rewards matched no "
            f"transition, {counts['dropped']} transitions without reward; resuming"
        )

    @property
    def busy(self) -> bool:
        return self.job is not None

    def start_if_ready(self) -> int | None:
        """Start an update once a rollout is complete; returns its number of transitions, else None."""
        if self.job is not None or not self.learner.ready():
            return None
        buffer = self.learner.take_rollout()
        self.job = self.pool.submit(self.learner.update, buffer)
        return buffer.size

    def finished(self) -> dict[str, float] | Exception | None:
        """The stats of the update that just finished, or the exception it raised; None while none did."""
        if self.job is None or not self.job.done():
            return None
        job, self.job = self.job, None
        try:
            return job.result()
        except Exception as err:  # returned, not raised: a failed update must not stop the controller
            return err

    def close(self) -> None:
        self.pool.shutdown(wait=True)  # an update in flight finishes and saves its checkpoint
