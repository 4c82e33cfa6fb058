"""Soak: 640x480 rgb8 at 30 Hz from a camera stand-in through the deploy graph in real mode.

`roboscape-r launch mode=real arg.camera=/lab_cam/color/image_raw` (camera_ingest + policy_controller,
random backend: the policy's own cost is not what is soaked). This process publishes the frames and
counts the Actions that answer them (one per frame, stamped like it). Every node's RSS is sampled
every ``sample_s``; growth = median RSS of the last window vs median of the first window after the
warm-up (windows of ``window_s``).
"""

from __future__ import annotations

import time

from common import LAB_CAMERA, lab_graph, percentiles, private_domain, wait_for_answers

AIM_GROWTH_PCT = 5.0


def run(seconds: float = 600.0, warmup_s: float = 60.0, sample_s: float = 5.0, window_s: float = 60.0) -> dict:
    domain = private_domain()
    graph, probe = lab_graph(domain)
    try:
        if not wait_for_answers(probe, 10, 90):
            return {"error": "no Action answered the camera within 90 s", "log": graph.tail()}
        start = time.monotonic()
        samples: list[dict] = []
        next_sample = start

        def tick() -> bool:
            nonlocal next_sample
            now = time.monotonic()
            if now >= next_sample:
                samples.append({"t_s": round(now - start, 1), **graph.rss()})
                next_sample += sample_s
            return graph.proc.poll() is not None

        sent = probe.stream(seconds, tick=tick)
        probe.stream(1.0, rate_hz=0)  # the answers in flight
        samples.append({"t_s": round(time.monotonic() - start, 1), **graph.rss()})
        answered = probe.answered(sent)
        latencies = [probe.answers[s][1] for s in answered]
        nodes = [name for name in samples[0] if name != "t_s"]
        memory = {name: growth(samples, name, warmup_s, window_s) for name in nodes}
        per_minute = answered_per_minute(sent, set(answered), start_ns=sent[0] if sent else 0)
        worst = max((m["growth_pct"] for m in memory.values() if m["growth_pct"] is not None), default=None)
        return {
            "camera": "640x480 rgb8 @ 30 Hz on " + LAB_CAMERA,
            "graph": "roboscape-r launch mode=real arg.camera=" + LAB_CAMERA + " (random backend)",
            "duration_s": round(seconds, 1),
            "frames_sent": len(sent),
            "frames_answered": len(answered),
            "answered_pct": round(100 * len(answered) / max(1, len(sent)), 2),
            "answered_per_minute": per_minute,
            "latency": percentiles(latencies),
            "rss_mib": memory,
            "worst_growth_pct": worst,
            "aim_growth_pct": AIM_GROWTH_PCT,
            "aim_met": worst is not None and worst <= AIM_GROWTH_PCT,
            "graph_still_running": graph.proc.poll() is None,
            "rss_samples": samples,
        }
    finally:
        probe.close()
        graph.stop()


def growth(samples: list[dict], name: str, warmup_s: float, window_s: float) -> dict:
    import numpy as np

    series = [(s["t_s"], s[name]) for s in samples if s.get(name) is not None]
    if not series:
        return {"growth_pct": None}
    end = series[-1][0]
    first = [v for t, v in series if warmup_s <= t < warmup_s + window_s] or [series[0][1]]
    last = [v for t, v in series if t >= end - window_s] or [series[-1][1]]
    base, final = float(np.median(first)), float(np.median(last))
    return {
        "start_mib": round(series[0][1], 1),
        "after_warmup_mib": round(base, 1),
        "end_mib": round(final, 1),
        "max_mib": round(max(v for _, v in series), 1),
        "growth_pct": round(100 * (final - base) / base, 2),
    }


def answered_per_minute(sent: list[int], answered: set[int], start_ns: int) -> list[float]:
    """Share of frames answered in each minute of the stream (%), to show no drift."""
    minutes: dict[int, list[bool]] = {}
    for stamp in sent:
        minutes.setdefault(int((stamp - start_ns) / 60e9), []).append(stamp in answered)
    return [round(100 * sum(v) / len(v), 2) for _, v in sorted(minutes.items())]
