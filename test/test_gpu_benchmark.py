"""bench/gpu_benchmark.py, the package's one GPU script, runs every part at toy size (`--dry-run`) on the CPU:
so the script a lab runs on its GPU machine cannot rot between GPU runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.slow
def test_dry_run_exercises_every_part(tmp_path):
    out = tmp_path / "gpu_benchmark.json"
    done = subprocess.run(
        [sys.executable, "bench/gpu_benchmark.py", "--dry-run", "--output", str(out)],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["device"].startswith(("cpu", "NVIDIA"))
    train = report["train_wm"]
    assert train["steps"] == {"tokenizer": 4, "action": 4}
    assert all(rate > 0 for rate in train["steps_per_s"].values()) and train["peak_memory_mb"] > 0
    quality = report["evaluate_wm"]
    assert quality["horizon"] == 8 and math.isfinite(quality["dpsnr_db"]) and quality["held_out_episodes"] > 0
    assert set(report["imagination"]) == {"batch4", "batch8", "part_seconds"}
    assert all(report["imagination"][b]["env_steps_per_s"] > 0 for b in ("batch4", "batch8"))
    latency = report["latency"]
    for case in ("policy_torch", "policy_onnx", "world_model_step_torch"):
        for batch in (1, 16):
            p50, p99 = latency[f"{case}_batch{batch}"]["p50_ms"], latency[f"{case}_batch{batch}"]["p99_ms"]
            assert 0 < p50 <= p99, case
    assert latency["policy_providers"]["onnx"][-1] == "CPUExecutionProvider"
