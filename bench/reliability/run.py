"""The reliability battery of the deploy graph: one scenario per module, each report as JSON.

    python bench/reliability/run.py soak                 # 10 min of 640x480 @ 30 Hz, RSS of every node
    python bench/reliability/run.py kill_controller      # kill -9 policy_controller mid-run
    python bench/reliability/run.py kill_dreamer         # kill -9 the dreamer in the imagination graph
    python bench/reliability/run.py record_sigint        # Ctrl-C while recording episodes
    python bench/reliability/run.py flood                # 60 s of malformed frames among good ones
    python bench/reliability/run.py all --quick          # every scenario for a few seconds (the test)

Each report goes to bench/results/reliability_<scenario>.json and stdout; ``--docs FILE`` also
merges it (without the per-sample series) into FILE under the scenario's name (the committed
docs/results/reliability.json). docs/results/reliability.md explains the figures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: bench_results

from bench_results import publish  # noqa: E402

# Durations of the full battery, and of --quick (each scenario for a few seconds, so the scripts
# cannot rot: test/test_reliability_battery.py runs them).
FULL = {
    "soak": dict(seconds=600.0, warmup_s=60.0, window_s=60.0),
    "kill_controller": dict(run_s=5.0, repeats=5),
    "kill_dreamer": dict(run_s=5.0),
    "record_sigint": dict(episodes=10),
    "flood": dict(seconds=60.0),
}
QUICK = {
    "soak": dict(seconds=8.0, warmup_s=2.0, sample_s=1.0, window_s=2.0),
    "kill_controller": dict(run_s=1.0, repeats=1),
    "kill_dreamer": dict(run_s=1.0),
    "record_sigint": dict(episodes=1),
    "flood": dict(seconds=4.0),
}


def scenario(name: str):
    """The module of a scenario (bench/reliability/<name>.py) runs it: run(**settings) -> report."""
    return importlib.import_module(name).run


def machine() -> str:
    load = os.getloadavg()[0]
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load {load:.1f} at start"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=[*FULL, "all"])
    parser.add_argument("--quick", action="store_true", help="a few seconds per scenario (plumbing check)")
    parser.add_argument("--docs", type=Path, help="merge the report (without per-sample series) into this JSON file")
    opts = parser.parse_args(argv)
    names = list(FULL) if opts.scenario == "all" else [opts.scenario]
    reports = {}
    for name in names:
        started = time.time()
        settings = (QUICK if opts.quick else FULL)[name]
        report = {
            "scenario": name,
            "machine": machine(),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "quick": opts.quick,
            "settings": settings,
            **scenario(name)(**settings),
            "wall_s": round(time.time() - started, 1),
        }
        reports[name] = publish(f"reliability_{name}" + ("_quick" if opts.quick else ""), report)
        if opts.docs:
            merged = json.loads(opts.docs.read_text()) if opts.docs.is_file() else {}
            merged[name] = {k: v for k, v in report.items() if k not in ("rss_samples", "log")}
            opts.docs.write_text(json.dumps(merged, indent=2) + "\n")
    return reports


if __name__ == "__main__":
    main()
