"""Which Action may step an environment node (sim_bridge, the dreamer in imagine mode), without ROS.

Such a node publishes a frame, waits for the Action answering it (the Action's stamp is the frame's)
and steps once. The loop is lossy and repeats itself: the node re-sends a frame nobody answered, a
policy re-sends its answer when it sees a frame again, and the first frame of a new episode can
overtake the latched episode id on its way to the policy. The gate sorts every Action into

    step     the one answer that moves the environment
    ignore   expected repeats: an answer to a frame already stepped from, to an episode's final
             frame, or to the current frame carrying the previous episode's id (its repeat follows)
    refuse   a real problem (the episode has ended, another episode's id): warn, nothing moves

The gate only sees stamps and ids; checking the Action's values is ``action_spec.check_command``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Admission:
    verdict: Literal["step", "ignore", "refuse"]
    reason: str = ""  # refuse: a stable key for throttled warnings ("ended", "episode")
    message: str = ""


STEP = Admission("step")
IGNORE = Admission("ignore")


class StepGate:
    def __init__(self, memory: int = 256) -> None:
        self.current: list[int] = []  # stamps the current frame went out under (ns)
        self.past: deque[int] = deque(maxlen=memory)  # stamps of frames already stepped from
        self.episode_id = ""
        self.previous_episode = ""

    def published(self, stamp: int) -> None:
        """The current frame went out (again) under ``stamp``."""
        if stamp not in self.current:
            self.current.append(stamp)

    def moved_on(self) -> None:
        """The environment stepped or reset: the current frame's stamps become past."""
        self.past.extend(self.current)
        self.current = []

    def new_episode(self, episode_id: str) -> None:
        self.moved_on()
        self.previous_episode, self.episode_id = self.episode_id, episode_id

    def admit(self, answers: int, episode_id: str, ended: bool) -> Admission:
        """An Action answering the frame stamped ``answers``, carrying ``episode_id`` ('' = any)."""
        if answers in self.past or (ended and answers in self.current):
            return IGNORE
        if ended:
            return Admission("refuse", "ended", f"episode {self.episode_id} has ended (call the reset service)")
        if episode_id and episode_id != self.episode_id:
            if episode_id == self.previous_episode and answers in self.current:
                return IGNORE
            return Admission(
                "refuse", "episode", f"it belongs to episode '{episode_id}', the current one is '{self.episode_id}'"
            )
        return STEP
