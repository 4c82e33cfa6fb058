"""Recording the topic loop into the episode dataset format (camera_ingest's ``record.*`` mode).

The camera's model-size frames and the Actions that answer them become episodes of a
``lerobot.DatasetWriter`` dataset: frame t is the observation, action t the Action stamped like it
(policy_controller stamps an Action with the observation it answers), as ``collect`` records them.

    recorder = EpisodeRecorder(root, task="reach-v3", ...)
    recorder.observation(stamp_ns, frame)     # every output frame (repeats of a stamp are ignored)
    recorder.action(stamp_ns, names, values, source, episode_id)  # every Action; why it was not recorded, or None
    recorder.episode(episode_id)              # the episode topic; a new id starts a new episode
    recorder.success()                        # the sim's success flag after a step
    recorder.close()                          # on shutdown: the last episode, then the dataset

Episodes: a frame belongs to the episode its Action names (``Action.episode_id``), else to the one
whose id was current when the frame arrived (frames before the first id belong to the episode that
id names). When a new episode's first frame overtakes its id, policy_controller answers it with the
old id and then again with the new one (the one a simulator executes): that second answer moves
the frame, with its new action, into the new episode. An episode is written when the first answer
to a frame of a later episode arrives (a late answer to the old episode's last frame still counts)
and at ``close``; the dataset folder appears only at ``close`` (the writer's atomic rename), so a
killed recorder leaves no half dataset, only a hidden partial folder that the next writer removes.

Not recorded, and counted: Actions with NaN/inf values, the wrong names or length, or a stamp that
answers no frame seen (unmatched); frames no Action answered. Holds (source ``hold:*``) and the
same Action sent again for a repeated frame are skipped silently.

Success and done labels: after ``success()``, the next new frame is the one that shows success; the
episode is a success when that frame was recorded, and ``done_labels`` marks it as ``collect`` does.
The state features describe the loop, not the robot (joint states are not recorded): ``time_s``,
each frame's stamp relative to the episode's first, and ``answer_delay_s``, how long after the frame
its Action arrived here (the controller's response time as this node saw it).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roboscape_r_ros.data.done_labels import done_labels
from roboscape_r_ros.data.lerobot import KINDS, DatasetError, DatasetSummary, DatasetWriteError, DatasetWriter, Episode

STATE_NAMES = ["time_s", "answer_delay_s"]
MAX_WAITING_FRAMES = 256  # frames kept waiting for their Action; older ones count as unanswered
MAX_REMEMBERED = 1024  # stamps of recorded frames remembered, to skip their repeats


class RecordingError(DatasetError):
    """A recording that cannot start as configured (no task name, unknown kind)."""


@dataclass
class _Row:
    stamp_ns: int
    frame: np.ndarray  # uint8 [H,W,3]
    action: np.ndarray  # float32 [A]
    arrival: float  # monotonic time the frame arrived
    delay_s: float  # from the frame's arrival to its Action's


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
        overwrite: bool = False,
    ) -> None:
        if not task.strip():
            raise RecordingError("a task name is needed (record.task)")
        if kind not in KINDS:
            raise RecordingError(f"kind '{kind}' is not one of {', '.join(KINDS)} (record.kind)")
        self.writer = DatasetWriter(
            Path(root),
            fps=fps,
            camera=camera,
            image_shape=image_shape,
            action_names=list(action_names),
            state_names=STATE_NAMES,
            robot_type="ros",
            overwrite=overwrite,
        )
        self.task, self.instruction, self.kind = task, instruction, kind
        self.action_names = list(action_names)
        self.episode_id = ""  # the id frames arriving now are tagged with
        self.waiting: OrderedDict[int, tuple[str, np.ndarray, float]] = (
            OrderedDict()
        )  # stamp -> (episode, frame, arrival)
        self.open_id: str | None = None  # the episode whose rows are being collected
        self.rows: list[_Row] = []
        self.recorded: OrderedDict[int, None] = OrderedDict()  # stamps of the latest recorded frames
        self.last_stamp: int | None = None  # the newest frame seen
        self.success_after: dict[str, int] = {}  # episode -> the newest frame stamp when success was reported
        self.counts: Counter[str] = Counter()  # frames, unanswered, episodes, and refusal reasons
        self.written: list[RecordedEpisode] = []

    # -- streams --------------------------------------------------------------------------------
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
        self, stamp_ns: int, names: Sequence[str], values: Sequence[float], source: str = "", episode_id: str = ""
    ) -> str | None:
        """Record the Action answering the frame stamped ``stamp_ns``; else return why not (a key)."""
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
        if stamp_ns in self.recorded:  # answered again for another episode: move the frame there
            row = next((r for r in self.rows if r.stamp_ns == stamp_ns), None)
            if row is None:
                return "repeat"  # its episode was written already
            self.rows.remove(row)
            frame, arrival = row.frame, row.arrival
        elif stamp_ns in self.waiting:
            tag, frame, arrival = self.waiting.pop(stamp_ns)
            episode_id = episode_id or tag
        else:
            self.counts["unmatched"] += 1
            return "unmatched"
        if self.open_id and episode_id and episode_id != self.open_id:
            self._write_open()
        if self.open_id is None or (episode_id and not self.open_id):
            self.open_id = episode_id
        self.rows.append(_Row(stamp_ns, frame, action, arrival, time.monotonic() - arrival))
        self.recorded[stamp_ns] = None
        if len(self.recorded) > MAX_REMEMBERED:
            self.recorded.popitem(last=False)
        return None

    def episode(self, episode_id: str) -> None:
        if episode_id == self.episode_id:
            return
        if not self.episode_id:  # the first id heard names the episode already running
            self.waiting = OrderedDict((s, (episode_id, *rest)) for s, (_, *rest) in self.waiting.items())
            if self.open_id == "":
                self.open_id = episode_id
        self.episode_id = episode_id

    def success(self) -> None:
        if self.last_stamp is not None:
            self.success_after.setdefault(self.episode_id, self.last_stamp)

    # -- output ---------------------------------------------------------------------------------
    def _write_open(self) -> None:
        """Write the open episode (when it has frames) and forget it."""
        rows, episode_id = sorted(self.rows, key=lambda r: r.stamp_ns), self.open_id
        self.rows, self.open_id = [], None
        if not rows:
            return
        stamps = np.array([r.stamp_ns for r in rows])
        after = self.success_after.pop(episode_id, None)
        shown = np.flatnonzero(stamps > after) if after is not None else []
        success_frame = int(shown[0]) if len(shown) else None
        done, subtask_index = done_labels(len(rows), [] if success_frame is None else [success_frame])
        self.writer.add_episode(
            Episode(
                frames=np.stack([r.frame for r in rows]),
                actions=np.stack([r.action for r in rows]),
                states=np.stack([(stamps - stamps[0]) * 1e-9, [r.delay_s for r in rows]], axis=1).astype(np.float32),
                done=done,
                subtask_index=subtask_index,
                task=self.task,
                instruction=self.instruction,
                success=success_frame is not None,
                kind=self.kind,
            )
        )
        self.counts["episodes"] += 1
        self.written.append(RecordedEpisode(episode_id or "", len(rows), success_frame is not None))

    def close(self) -> DatasetSummary | None:
        """Write the open episode and publish the dataset; None (and no folder) when nothing was recorded."""
        self._write_open()
        self.counts["unanswered"] += len(self.waiting)
        self.waiting.clear()
        if not self.written:
            with contextlib.suppress(DatasetWriteError):
                self.writer.finalize()  # without episodes it removes its partial folder and refuses
            return None
        return self.writer.finalize()
