"""Recording the topic loop into the episode dataset format (camera_ingest's ``record.*`` mode).

The camera's model-size frames and the Actions that answer them become episodes of a
``lerobot.DatasetWriter`` dataset: frame t is the observation, action t the Action stamped like it
(policy_controller stamps an Action with the observation it answers), as ``collect`` records them.

    recorder = EpisodeRecorder(root, task="push-v3", states=[("/state", JOINT_STATE)], ...)
    recorder.observation(stamp_ns, frame)     # every output frame (repeats of a stamp are ignored)
    recorder.state(topic, stamp_ns, names, values)  # every state message; why it was not kept, or None
    recorder.action(stamp_ns, names, values, source, episode_id, facts)  # every Action; why not recorded, or None
    recorder.episode(episode_id)              # the episode topic; a new id starts a new episode
    recorder.success()                        # the sim's success flag after a step
    recorder.close()                          # on shutdown: the last episode, then the dataset

Episodes: a frame belongs to the episode its Action names (``Action.episode_id``), else to the one
whose id was current when the frame arrived (frames before the first id belong to the episode that
id names). When a new episode's first frame overtakes its id, policy_controller answers it with the
old id and then again with the new one (the one a simulator executes): that second answer moves
the frame, with its new action, into the new episode; an answer under an id older than the one the
frame arrived with is not recorded (counted as ``earlier episode``): the frame waits for the answer
under its own id, and stays unanswered if none comes. An episode is written when the first answer
to a frame of a later episode arrives (a late answer to the old episode's last frame still counts)
and at ``close``; the dataset folder appears only at ``close`` (the writer's atomic rename), so a
killed recorder leaves no half dataset, only a hidden partial folder that the next writer removes.

Not recorded, and counted: Actions with NaN/inf values, the wrong names or length, or a stamp that
answers no frame seen (unmatched); frames no Action answered. Holds (source ``hold:*``) and the
same Action sent again for a repeated frame are skipped silently.

Success and done labels: ``success()`` notes the newest frame seen; the next frame after it shows
success, or that frame itself when it is its episode's last (the flag, a Bool without a stamp, arrived
after the final frame). An episode is a success when that frame was recorded, and ``done_labels``
marks it as ``collect`` does. The note belongs to the episode whose frames span its stamp, not to the
episode id current when it arrived: the next episode's id may overtake it.

State: every state stream (JointState positions, PoseStamped poses, read by data/message_values.py)
goes into ``observation.state`` as ``import-bag`` puts it there (data/alignment.py): a frame holds
each stream's last message stamped at or before it, and a frame whose stream has no message yet
(missing) or only one older than ``max_age_s`` (stale) is dropped and counted in ``dropped``; names
are ``<joint>.pos`` and ``<topic>.x`` .. ``<topic>.qw``, fixed by each stream's first message (a
message with other names is not kept, and counted). Without state streams ``observation.state`` is
the loop's timing: ``time_s``, each frame's stamp relative to the episode's first, and
``answer_delay_s``, how long after the frame its Action arrived here.

Commands: beside ``action`` (the Action's values, as the policy emits them) the ``command`` column
holds value x scale, the physical command in the Action's units. It is computed from the Action,
not read from the adapter topics: cmd_array carries no header and cmd_trajectory is stamped zero
("start now"), so neither can be matched to the frame it answers, while every adapter message
follows from value x scale (array: equal; twist: divided by the period; pose and joint targets:
added to the current state, which ``observation.state`` holds). The first recorded Action fixes the
dataset's ``action_spec`` (names, units, scale, limits, mode, period, frame; info.json, the format
``import-bag`` writes); Actions that disagree with it are not recorded (``spec``). info.json's
``recording`` says what was kept, dropped and refused.
"""

from __future__ import annotations

import functools
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from roboscape_r_ros.contract.action_spec import MODE_NAMES
from roboscape_r_ros.data.alignment import hold_last, state_names
from roboscape_r_ros.data.done_labels import done_labels
from roboscape_r_ros.data.lerobot import KINDS, DatasetError, DatasetSummary, DatasetWriter, Episode, check_target
from roboscape_r_ros.data.message_values import ACTION

LOOP_STATE_NAMES = ["time_s", "answer_delay_s"]  # observation.state without state streams
MAX_WAITING_FRAMES = 256  # frames kept waiting for their Action; older ones count as unanswered
MAX_REMEMBERED = 1024  # stamps of recorded frames remembered, to skip their repeats
MAX_STATE_MESSAGES = 100_000  # per stream, kept until the episode they may belong to is written
# The facts of an Action message whose optional fields are empty (data/message_values.reading).
EMPTY_ACTION_FACTS: dict[str, Any] = {
    "units": (),
    "scale": (),
    "lower": (),
    "upper": (),
    "mode": 0,
    "period_s": 0.0,
    "frame_id": "",
}


class RecordingError(DatasetError):
    """A recording that cannot start as configured (no task name, unknown kind)."""


@dataclass
class _Row:
    stamp_ns: int
    frame: np.ndarray  # uint8 [H,W,3]
    action: np.ndarray  # float32 [A]
    command: np.ndarray  # float32 [A] value x scale
    arrival: float  # monotonic time the frame arrived
    delay_s: float  # from the frame's arrival to its Action's


@dataclass
class _StateStream:
    """One state topic's messages since the last written episode (names fixed by its first message)."""

    topic: str
    msgtype: str
    names: tuple[str, ...] = ()
    stamps: list[int] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)
    max_age_ns: int = 0  # largest age of a held message in a recorded frame

    def prune(self, before_ns: int) -> None:
        """Forget messages no frame at or after ``before_ns`` can hold (keeps the last one before it)."""
        first = max(int(np.searchsorted(self.stamps, before_ns, side="right")) - 1, 0)
        del self.stamps[:first], self.values[:first]


@dataclass(frozen=True)
class RecordedEpisode:
    episode_id: str
    frames: int
    success: bool


class EpisodeRecorder:
    def __init__(
        self,
        root: str | Path,
        *,
        task: str,
        instruction: str,
        kind: str,
        fps: int,
        camera: str,
        image_shape: tuple[int, int, int],
        action_names: Sequence[str],
        states: Sequence[tuple[str, str]] = (),
        max_age_s: float = 0.1,
        action_topic: str = "action",
        overwrite: bool = False,
    ) -> None:
        """``states``: (topic, message type) of each state stream, in ``observation.state`` order."""
        if not task.strip():
            raise RecordingError("a task name is needed (record.task)")
        if kind not in KINDS:
            raise RecordingError(f"kind '{kind}' is not one of {', '.join(KINDS)} (record.kind)")
        if not max_age_s > 0:
            raise RecordingError(f"max_age_s must be positive, got {max_age_s} (record.max_age_s)")
        if len({topic for topic, _ in states}) != len(states):
            raise RecordingError(f"a state topic is listed twice: {[topic for topic, _ in states]}")
        check_target(Path(root), overwrite)  # now, not when the first episode ends
        # The writer starts with the first episode: only then are the state streams' names known.
        self.new_writer = functools.partial(
            DatasetWriter,
            Path(root),
            fps=fps,
            camera=camera,
            image_shape=image_shape,
            robot_type="ros",
            overwrite=overwrite,
        )
        self.writer: DatasetWriter | None = None
        self.task, self.instruction, self.kind = task, instruction, kind
        self.action_names = list(action_names)
        self.action_topic = action_topic
        self.action_facts: dict[str, Any] | None = None  # of the first recorded Action: the dataset's action spec
        self.states = {topic: _StateStream(topic, msgtype) for topic, msgtype in states}
        self.max_age_ns = round(max_age_s * 1e9)
        self.dropped: Counter[str] = Counter()  # "<topic> missing|stale" -> frames not recorded
        self.delays: list[float] = []  # answer delay of every recorded frame
        self.episode_id = ""  # the id frames arriving now are tagged with
        self.heard: dict[str, int] = {}  # episode id -> the order it was heard in
        self.waiting: OrderedDict[int, tuple[str, np.ndarray, float]] = (
            OrderedDict()
        )  # stamp -> (episode, frame, arrival)
        self.open_id: str | None = None  # the episode whose rows are being collected
        self.rows: list[_Row] = []
        self.recorded: OrderedDict[int, None] = OrderedDict()  # stamps of the latest recorded frames
        self.last_stamp: int | None = None  # the newest frame seen
        self.success_stamps: list[int] = []  # the newest frame stamp whenever success was reported
        self.counts: Counter[str] = Counter()  # frames, unanswered, episodes, and refusal reasons
        self.written: list[RecordedEpisode] = []

    # -- streams --------------------------------------------------------------------------------
    def state(self, topic: str, stamp_ns: int, names: Sequence[str], values: Sequence[float]) -> str | None:
        """Keep one message of a state stream; else return why not (a key, also counted as '<topic> <key>')."""
        stream = self.states[topic]
        names, values = tuple(names), list(values)
        if stream.stamps and stamp_ns <= stream.stamps[-1]:
            return None if stamp_ns == stream.stamps[-1] else self._count(f"{topic} order")  # a repeat, or back
        if len(values) != len(names) or (stream.names and names != stream.names):
            return self._count(f"{topic} names")
        if not np.isfinite(values).all():
            return self._count(f"{topic} nonfinite")
        stream.names = names
        stream.stamps.append(stamp_ns)
        stream.values.append(values)
        if len(stream.stamps) > 2 * MAX_STATE_MESSAGES:  # no episode written for a long time: keep the newest
            del stream.stamps[:-MAX_STATE_MESSAGES], stream.values[:-MAX_STATE_MESSAGES]
        return None

    def _count(self, key: str) -> str:
        self.counts[key] += 1
        return key.rsplit(" ", 1)[-1]

    def observation(self, stamp_ns: int, frame: np.ndarray) -> None:
        if stamp_ns in self.waiting or stamp_ns in self.recorded:
            return  # a frame published again
        self.waiting[stamp_ns] = (self.episode_id, frame, time.monotonic())
        self.last_stamp = stamp_ns if self.last_stamp is None else max(self.last_stamp, stamp_ns)
        self.counts["frames"] += 1
        while len(self.waiting) > MAX_WAITING_FRAMES:
            self.waiting.popitem(last=False)
            self.counts["unanswered"] += 1

    def action(
        self,
        stamp_ns: int,
        names: Sequence[str],
        values: Sequence[float],
        source: str = "",
        episode_id: str = "",
        facts: dict[str, Any] | None = None,
    ) -> str | None:
        """Record the Action answering the frame stamped ``stamp_ns``; else return why not (a key).
        ``facts``: the Action's units, scale, limits, mode, period and frame (message_values.reading)."""
        if source.startswith("hold:"):
            return "hold"
        if stamp_ns in self.recorded and not (episode_id and self.open_id and episode_id != self.open_id):
            return "repeat"
        if list(names) != self.action_names:
            self.counts["names"] += 1
            return "names"
        action = np.asarray(values, np.float32)
        if not np.isfinite(action).all():
            self.counts["nonfinite"] += 1
            return "nonfinite"
        facts = {**EMPTY_ACTION_FACTS, **(facts or {})}
        if self.action_facts is not None and facts != self.action_facts:
            self.counts["spec"] += 1
            return "spec"
        if stamp_ns in self.recorded:  # answered again for another episode: move the frame there
            row = next((r for r in self.rows if r.stamp_ns == stamp_ns), None)
            if row is None:
                return "repeat"  # its episode was written already
            self.rows.remove(row)
            frame, arrival = row.frame, row.arrival
        elif stamp_ns in self.waiting:
            tag, frame, arrival = self.waiting[stamp_ns]
            if episode_id and tag and self.heard.get(episode_id, -1) < self.heard.get(tag, -1):
                # the frame came after its episode's id, the answer under the previous id: the one the
                # sim executes (under the frame's own id) follows, or never comes (Ctrl-C: unanswered)
                self.counts["earlier episode"] += 1
                return "earlier episode"
            del self.waiting[stamp_ns]
            episode_id = episode_id or tag
        else:
            self.counts["unmatched"] += 1
            return "unmatched"
        if self.open_id and episode_id and episode_id != self.open_id:
            self._write_open()
        if self.open_id is None or (episode_id and not self.open_id):
            self.open_id = episode_id
        self.action_facts = facts
        command = np.asarray(values, np.float64) * np.asarray(facts["scale"] or 1.0)
        self.rows.append(_Row(stamp_ns, frame, action, command.astype(np.float32), arrival, time.monotonic() - arrival))
        self.recorded[stamp_ns] = None
        if len(self.recorded) > MAX_REMEMBERED:
            self.recorded.popitem(last=False)
        return None

    def episode(self, episode_id: str) -> None:
        if episode_id == self.episode_id:
            return
        self.heard.setdefault(episode_id, len(self.heard))
        if not self.episode_id:  # the first id heard names the episode already running
            self.waiting = OrderedDict(
                (s, (episode_id, frame, arrival)) for s, (_, frame, arrival) in self.waiting.items()
            )
            if self.open_id == "":
                self.open_id = episode_id
        self.episode_id = episode_id

    def success(self) -> None:
        if self.last_stamp is not None:
            self.success_stamps.append(self.last_stamp)

    # -- output ---------------------------------------------------------------------------------
    def _write_open(self) -> None:
        """Write the open episode (its frames with fresh state) and forget it."""
        rows, episode_id = sorted(self.rows, key=lambda r: r.stamp_ns), self.open_id
        self.rows, self.open_id = [], None
        if not rows:
            return
        stamps = np.array([r.stamp_ns for r in rows])
        reports = [s for s in self.success_stamps if stamps[0] <= s <= stamps[-1]]
        self.success_stamps = [s for s in self.success_stamps if s > stamps[-1]]
        shown = stamps[stamps > reports[0]] if reports else stamps[:0]
        shown_stamp = shown[0] if len(shown) else (stamps[-1] if reports and reports[0] == stamps[-1] else None)
        states, keep = self._held_states(stamps)
        rows, stamps, states = [r for r, k in zip(rows, keep) if k], stamps[keep], states[keep]
        if not rows:
            return
        success_frame = int(np.flatnonzero(stamps == shown_stamp)[0]) if (stamps == shown_stamp).any() else None
        done, subtask_index = done_labels(len(rows), [] if success_frame is None else [success_frame])
        if not self.states:
            states = np.stack([(stamps - stamps[0]) * 1e-9, [r.delay_s for r in rows]], axis=1)
        self._writer().add_episode(
            Episode(
                frames=np.stack([r.frame for r in rows]),
                actions=np.stack([r.action for r in rows]),
                states=states.astype(np.float32),
                done=done,
                subtask_index=subtask_index,
                task=self.task,
                instruction=self.instruction,
                success=success_frame is not None,
                kind=self.kind,
                commands=np.stack([r.command for r in rows]),
            )
        )
        self.delays += [r.delay_s for r in rows]
        self.counts["episodes"] += 1
        self.written.append(RecordedEpisode(episode_id or "", len(rows), success_frame is not None))

    def _held_states(self, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(float64 [T,S] state values held at the frames, bool [T] frames with every stream fresh);
        counts the dropped frames and forgets the messages no later frame can hold."""
        keep, columns, ages = np.ones(len(stamps), bool), [], []
        for topic, stream in self.states.items():
            values = np.asarray(stream.values, np.float64).reshape(len(stream.stamps), len(stream.names))
            held = hold_last(np.asarray(stream.stamps, np.int64), stamps, self.max_age_ns)
            self.dropped.update({f"{topic} missing": int(held.missing.sum()), f"{topic} stale": int(held.stale.sum())})
            keep &= held.usable
            columns.append(values[np.maximum(held.row, 0)] if len(values) else np.zeros((len(stamps), 0)))
            ages.append(held.age_ns)
        for stream, age in zip(self.states.values(), ages):
            stream.max_age_ns = max(stream.max_age_ns, int(age[keep].max(initial=0)))
            stream.prune(min([int(stamps[-1]), *self.waiting]))
        self.dropped = +self.dropped  # drop zero counts
        return (np.concatenate(columns, 1) if columns else np.empty((len(stamps), 0))), keep

    def _writer(self) -> DatasetWriter:
        if self.writer is None:
            self.writer = self.new_writer(
                action_names=self.action_names,
                state_names=state_names(self.states.values()) or LOOP_STATE_NAMES,
                command_names=self.action_names,
            )
        return self.writer

    def action_spec(self) -> dict:
        """What the recorded actions mean (info.json's ``action_spec``, as import-bag writes it)."""
        facts, width = self.action_facts or EMPTY_ACTION_FACTS, len(self.action_names)
        spec = {
            "source": "action",
            "topic": self.action_topic,
            "message_type": ACTION.replace("/msg/", "/"),
            "names": self.action_names,
            "units": list(facts["units"] or ("1",) * width),
            "scale": list(facts["scale"] or (1.0,) * width),
            "mode": MODE_NAMES.get(facts["mode"], str(facts["mode"])),
            "period_s": facts["period_s"] or None,
            "frame_id": facts["frame_id"],
        }
        if facts["lower"]:
            spec |= {"lower": list(facts["lower"]), "upper": list(facts["upper"])}
        return spec

    def recording_info(self) -> dict:
        """info.json's ``recording``: what was kept, dropped and refused."""
        return {
            "state_topics": list(self.states),
            "max_age_limit_s": self.max_age_ns / 1e9,
            "max_age_s": {topic: s.max_age_ns / 1e9 for topic, s in self.states.items()},
            "frames_seen": self.counts["frames"],
            "frames_recorded": sum(e.frames for e in self.written),
            "dropped": dict(sorted(self.dropped.items())),
            "not_recorded": {k: n for k, n in sorted(self.counts.items()) if n and k not in ("frames", "episodes")},
            "answer_delay_s": {"median": float(np.median(self.delays)), "max": float(np.max(self.delays))},
        }

    def close(self) -> DatasetSummary | None:
        """Write the open episode and publish the dataset; None (and no folder) when nothing was recorded."""
        self._write_open()
        self.counts["unanswered"] += len(self.waiting)
        self.waiting.clear()
        if self.writer is None:  # nothing recorded: no folder was made
            return None
        return self.writer.finalize(extra_info={"action_spec": self.action_spec(), "recording": self.recording_info()})
