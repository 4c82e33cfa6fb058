"""Ctrl-C (SIGINT) while camera_ingest records, in the middle of an episode: no finished episode lost.

`roboscape-r launch mode=sim` (sim_bridge with Meta-World reach-v3 at 64x64 and 20-step episodes,
the expert backend) with a config_dir whose camera_ingest.yaml sets record.* (as a lab would).
After ``episodes`` episodes ended (sim_bridge logs each), halfway into the next one, the launcher
gets SIGINT and stops every node once. The dataset is then read back with the project's reader
and `roboscape-r inspect`: each finished episode must be there with every frame the sim stepped
from plus its final frame (steps + 1); the episode cut short is written too (its frames so far).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import REPO, Graph, private_domain, ros_env

ENDED = r"episode (\S+) ended after (\d+) steps"


def run(episodes: int = 4) -> dict:
    domain = private_domain(4)
    env = ros_env(domain)
    with tempfile.TemporaryDirectory(prefix="reliability_record_") as tmp:
        config, out = Path(tmp) / "config", Path(tmp) / "recorded"
        shutil.copytree(REPO / "config", config)
        path = config / "camera_ingest.yaml"
        data = yaml.safe_load(path.read_text())
        data["/**/camera_ingest"]["ros__parameters"].update(
            {"record.output": str(out), "record.task": "reach-v3", "record.camera": "corner2"}
        )
        path.write_text(yaml.safe_dump(data))
        graph = Graph(
            env,
            "sim",
            f"config_dir={config}",
            "arg.backend=expert",
            "arg.task=reach-v3",
            "param.sim_bridge.max_steps=20",
            "param.sim_bridge.camera_resolution=64",
        )
        try:
            return measure(graph, episodes, out, env)
        finally:
            graph.stop()


def measure(graph: Graph, episodes: int, out: Path, env: dict) -> dict:
    deadline = time.monotonic() + 180 + 20 * episodes
    while graph.count(ENDED, 0, float("inf")) < episodes and time.monotonic() < deadline:
        if graph.proc.poll() is not None:
            return {"error": "the graph stopped", "log": graph.tail()}
        time.sleep(0.02)
    ends = [t for t, line in graph.lines if re.search(ENDED, line)]
    if len(ends) < episodes:
        return {"error": f"only {len(ends)} episodes ended within the time limit", "log": graph.tail()}
    length_s = (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1 else 0.6
    time.sleep(length_s / 2)  # halfway into the next episode
    interrupted = time.monotonic()
    code = graph.stop()
    finished = [
        (m.group(1), int(m.group(2))) for t, line in graph.lines if t < interrupted and (m := re.search(ENDED, line))
    ]
    from roboscape_r_ros.data.reader import EpisodeDataset

    written = EpisodeDataset.open(out) if out.is_dir() else None
    frames = [len(written.episode(i).frames) for i in range(written.num_episodes)] if written else []
    inspect = subprocess.run(
        [sys.executable, "-m", "roboscape_r_ros.cli", "inspect", f"dataset={out}"],
        env=env,
        capture_output=True,
        text=True,
    )
    line = next((x for x in inspect.stdout.splitlines() if x.startswith("episodes")), inspect.stderr.strip())
    kept = frames[: len(finished)]
    log = next((x for _, x in graph.lines if "recording finished" in x or "recording lost" in x), None)
    return {
        "graph": "roboscape-r launch mode=sim (reach-v3, expert, 20-step episodes, 64x64) + camera_ingest record.*",
        "episode_length_s": round(length_s, 2),
        "sigint_after_episode_end_s": round(interrupted - ends[-1], 2),
        "launcher_exit_status": code,
        "episodes_finished_before_sigint": len(finished),
        "finished_steps": [steps for _, steps in finished],
        "dataset_episodes": len(frames),
        "dataset_frames_per_episode": frames,
        "finished_episodes_lost": len(finished) - len(kept),
        # every frame the sim stepped from plus each final frame: steps + 1 per finished episode
        "finished_frames_expected": sum(steps + 1 for _, steps in finished),
        "finished_frames_recorded": sum(kept),
        "episodes_of_another_length": sum(n != steps + 1 for n, (_, steps) in zip(kept, finished, strict=False)),
        "cut_episode_written": len(frames) > len(finished),
        "inspect_exit_status": inspect.returncode,
        "inspect_episodes_line": line,
        "recording_log": log and log.replace(str(out.parent), "<tmp>"),  # no machine path in a committed result
    }
