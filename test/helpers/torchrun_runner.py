"""Running `roboscape-r` under `torchrun --nproc_per_node 2` in tests: start, finish, kill the whole group,
and read the losses a run logged to TensorBoard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers import REPO


def torchrun(*args: str, **popen) -> subprocess.Popen:
    """`torchrun --standalone --nproc_per_node 2 -m roboscape_r_ros.cli args` in its own session."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.Popen(
        [*command, "-m", "roboscape_r_ros.cli", *args],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **popen,
    )


def finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def losses(run: Path) -> dict[tuple[str, int], float]:
    """Every logged loss (TensorBoard scalars: loss, token_ce, done_mse, held_out_action_mse) by (tag, step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for events in sorted((run / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            if tag.rsplit("/", 1)[1] in ("loss", "token_ce", "done_mse", "held_out_action_mse"):
                out.update({(tag, e.step): e.value for e in acc.Scalars(tag)})
    return out


def kill_with_workers(pid: int) -> None:
    """SIGKILL the ranks torchrun `pid` started (each in a session of its own: killing torchrun alone
    leaves them running), then torchrun: the whole group dies at once, as on a lost node."""
    workers = [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat") if _parent(stat) == pid]
    for worker in workers:
        os.kill(worker, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)


def _parent(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])  # field 4 of /proc/<pid>/stat
    except (OSError, IndexError, ValueError):
        return None
