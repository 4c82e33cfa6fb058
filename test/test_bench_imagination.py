"""bench/bench_imagination.py hands its options to the processes that measure: each figure was timed for
the 4-second default whatever `--seconds` asked; each --inference setting is its own measurement. No timing
here: the measuring functions are replaced by recorders and each child process runs in this one."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
from contextlib import redirect_stdout

from helpers import REPO


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_imagination", REPO / "bench" / "bench_imagination.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seconds_reward_resolutions_and_inference_reach_every_measurement(tmp_path, monkeypatch):
    bench = load_bench()
    measured = []

    def case_sim(seconds):
        measured.append(("sim", seconds, None))
        return {"steps_per_s": 100.0, "peak_rss_mb": 1.0}

    def case_world_model(preset, batch, seconds, resolutions, inference):
        measured.append((f"{preset}@{batch}/{inference}", seconds, resolutions))
        reward = {f"effnet@{r}": {"steps_per_s": 50.0, "peak_rss_mb": 1.0} for r in resolutions}
        return {"steps_per_s": 200.0, "frame_skip": 4, "with_reward": reward}

    real_run = subprocess.run

    def child(cmd, **kwargs):  # the measuring process, run here: `python bench_imagination.py --case ...`
        if cmd[1:2] != [bench.__file__]:
            return real_run(cmd, **kwargs)  # not ours (platform.processor() runs uname)
        assert kwargs["env"]["OMP_NUM_THREADS"] == "1"
        out = io.StringIO()
        with redirect_stdout(out):
            bench.main(cmd[2:])
        return subprocess.CompletedProcess(cmd, 0, out.getvalue(), "")

    monkeypatch.setattr(bench, "case_sim", case_sim)
    monkeypatch.setattr(bench, "case_world_model", case_world_model)
    monkeypatch.setattr(bench.subprocess, "run", child)
    output = tmp_path / "bench.json"
    with redirect_stdout(io.StringIO()):
        bench.main(
            ["--presets", "cpu", "--batches", "1,64", "--seconds", "31.5", "--reward-resolutions", "64"]
            + ["--inference", "", "--inference", "decode_steps=1,precision=bfloat16", "--output", str(output)]
        )
    fast = "decode_steps=1,precision=bfloat16"
    assert measured == [("sim", 31.5, None)] + [(f"cpu@{b}/{i}", 31.5, [64]) for b in (1, 64) for i in ("", fast)]
    rows = json.loads(output.read_text())["world_model"]
    assert [list(r["with_reward"]) for r in rows] == [["effnet@64"]] * 4
